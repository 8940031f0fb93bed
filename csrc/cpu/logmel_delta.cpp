// 3-D log-Mel on the CPU: FFT of a chunk of frames, then power -> mel -> log -> delta ->
// delta-delta in one pass over that chunk while its spectrum is still in cache.
//
// Work is split into (item, chunk of frames) pieces run in parallel. A chunk also computes the
// static log-Mel of kHalo frames on either side of it (clamped to the item), which is all that the
// two delta passes need, so chunks are independent and no full-size intermediate is written.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "checks.h"

// MKL (inside torch's CPU build on x86) runs the FFT. Called from our own parallel workers it can
// start nested threads of its own; each worker pins it to one thread (measured, 2 threads,
// 32 x 3 s: 4.0 ms without, 3.2 ms with). Weak, so that a torch without MKL still loads us.
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

namespace ssa_fast {
namespace {

// Restores the calling thread's MKL thread count on scope exit.
struct SingleThreadedMKL {
  int previous = 0;
  SingleThreadedMKL() {
    if (MKL_Set_Num_Threads_Local) previous = MKL_Set_Num_Threads_Local(1);
  }
  ~SingleThreadedMKL() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(previous);
  }
};

constexpr int64_t kHalo = 4;     // delta-delta of frame t reads static frames t-4 .. t+4
constexpr int64_t kChunk = 256;  // frames per work item: its spectrum (~0.5 MB) stays in L2
constexpr int64_t kRows = 16;    // frames per mel block (vector lanes)

// Natural log of a positive normal float. Branch-free so that loops over it vectorise:
// x = 2^e * m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172,
// atanh by its odd series up to s^9 (truncation < 2e-9 relative).
inline float log_positive(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const int32_t shifted = static_cast<int32_t>(bits - 0x3f3504f3u);
  const int32_t e = shifted >> 23;  // arithmetic shift: floor
  const uint32_t mbits = bits - (static_cast<uint32_t>(e) << 23);
  float m;
  std::memcpy(&m, &mbits, sizeof m);
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float poly =
      1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return static_cast<float>(e) * 0.69314718056f + 2.0f * s * poly;
}
inline double log_positive(double x) { return std::log(x); }

// acc[r] = sum_{f in [lo, hi)} w[f] * pt[f * kRows + r] for the kRows lanes r.
// float: explicit 4-wide vectors (GCC/Clang vector extensions; SSE2 / NEON without special flags)
// with kRows / 4 independent accumulators; left to the compiler, GCC vectorises the strided f loop
// instead, 8x slower here.
typedef float float4_t __attribute__((vector_size(16)));
static_assert(kRows == 16, "mel_lanes<float> is written for 16 lanes");

// Not inlined: inside the large kernel function the accumulators get spilled to the stack.
__attribute__((noinline)) void mel_lanes(const float* pt, const float* w, int64_t lo, int64_t hi,
                                         float* acc) {
  float4_t a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (int64_t f = lo; f < hi; ++f) {
    const float4_t wf = float4_t{} + w[f];
    float4_t col[4];
    std::memcpy(col, pt + f * kRows, sizeof col);
    a0 += wf * col[0];
    a1 += wf * col[1];
    a2 += wf * col[2];
    a3 += wf * col[3];
  }
  std::memcpy(acc, &a0, sizeof a0);
  std::memcpy(acc + 4, &a1, sizeof a1);
  std::memcpy(acc + 8, &a2, sizeof a2);
  std::memcpy(acc + 12, &a3, sizeof a3);
}

inline void mel_lanes(const double* pt, const double* w, int64_t lo, int64_t hi, double* acc) {
  for (int64_t r = 0; r < kRows; ++r) acc[r] = 0;
  for (int64_t f = lo; f < hi; ++f)
    for (int64_t r = 0; r < kRows; ++r) acc[r] += w[f] * pt[f * kRows + r];
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define SSA_SHUFFLE4(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
typedef int32_t int4_t __attribute__((vector_size(16)));
#define SSA_SHUFFLE4(a, b, i, j, k, l) __builtin_shuffle(a, b, int4_t{i, j, k, l})
#endif

// pt[f * kRows + r] = |z_r[f]|^2 for the kRows frames r of a full block, z_r interleaved
// (re, im) rows of F bins with row stride 2F. float: 4 bins of 4 frames per step, squared and
// pair-summed in registers, then a 4x4 transpose, so every store is a full vector.
__attribute__((noinline)) void power_lanes(const float* sp, int64_t F, float* pt) {
  int64_t f = 0;
  for (; f + 4 <= F; f += 4) {
    for (int64_t g = 0; g < kRows; g += 4) {
      float4_t p[4];
      for (int64_t i = 0; i < 4; ++i) {
        float4_t lo, hi;
        std::memcpy(&lo, sp + (g + i) * 2 * F + 2 * f, sizeof lo);
        std::memcpy(&hi, sp + (g + i) * 2 * F + 2 * f + 4, sizeof hi);
        lo *= lo;
        hi *= hi;
        p[i] = SSA_SHUFFLE4(lo, hi, 0, 2, 4, 6) + SSA_SHUFFLE4(lo, hi, 1, 3, 5, 7);
      }
      const float4_t t0 = SSA_SHUFFLE4(p[0], p[1], 0, 4, 1, 5);
      const float4_t t1 = SSA_SHUFFLE4(p[2], p[3], 0, 4, 1, 5);
      const float4_t t2 = SSA_SHUFFLE4(p[0], p[1], 2, 6, 3, 7);
      const float4_t t3 = SSA_SHUFFLE4(p[2], p[3], 2, 6, 3, 7);
      const float4_t cols[4] = {SSA_SHUFFLE4(t0, t1, 0, 1, 4, 5), SSA_SHUFFLE4(t0, t1, 2, 3, 6, 7),
                                SSA_SHUFFLE4(t2, t3, 0, 1, 4, 5), SSA_SHUFFLE4(t2, t3, 2, 3, 6, 7)};
      for (int64_t k = 0; k < 4; ++k) std::memcpy(pt + (f + k) * kRows + g, &cols[k], 16);
    }
  }
  for (; f < F; ++f)
    for (int64_t r = 0; r < kRows; ++r) {
      const float* z = sp + r * 2 * F + 2 * f;
      pt[f * kRows + r] = z[0] * z[0] + z[1] * z[1];
    }
}

template <typename scalar_t>
void power_lanes_partial(const scalar_t* sp, int64_t F, int64_t rows, scalar_t* pt) {
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* z = sp + r * F * 2;
    for (int64_t f = 0; f < F; ++f)
      pt[f * kRows + r] = z[2 * f] * z[2 * f] + z[2 * f + 1] * z[2 * f + 1];
  }
}
inline void power_lanes(const double* sp, int64_t F, double* pt) {
  power_lanes_partial(sp, F, kRows, pt);
}

// Mel bank stored sparsely: each filter is non-zero on one contiguous run of FFT bins.
template <typename scalar_t>
struct MelBands {
  std::vector<int64_t> lo, hi;  // filter m covers bins [lo[m], hi[m])
  const scalar_t* weights;      // (n_mels, n_freqs) row-major
  int64_t n_freqs;
};

template <typename scalar_t>
MelBands<scalar_t> make_bands(const at::Tensor& fb) {
  MelBands<scalar_t> bands;
  const int64_t M = fb.size(0), F = fb.size(1);
  bands.weights = fb.data_ptr<scalar_t>();
  bands.n_freqs = F;
  bands.lo.resize(M);
  bands.hi.resize(M);
  for (int64_t m = 0; m < M; ++m) {
    const scalar_t* row = bands.weights + m * F;
    int64_t lo = 0, hi = F;
    while (lo < F && row[lo] == 0) ++lo;
    while (hi > lo && row[hi - 1] == 0) --hi;
    bands.lo[m] = lo;
    bands.hi[m] = hi;
  }
  return bands;
}

struct Geometry {
  int64_t n_fft, n_freqs, n_mels, hop, T;
  int64_t win_lo, win_hi;  // the window is zero outside [win_lo, win_hi)
  int64_t offset;          // first sample of frame 0 (-n_fft/2 when centred)
};

// Buffers of one worker thread, reused across its work items (large per-chunk allocations
// would otherwise go back to the OS and be page-faulted in again on every chunk). The spectrum is
// not among them: fft_rfft_out computes into a temporary and copies, which costs more than the
// allocation that at::fft_rfft makes.
template <typename scalar_t>
struct Scratch {
  at::Tensor frames;  // (kChunk + 2 kHalo, n_fft)
  std::vector<scalar_t> c, d, pt;
  explicit Scratch(const Geometry& g) {
    const int64_t rows = kChunk + 2 * kHalo;
    frames = at::empty({rows, g.n_fft}, at::CPU(c10::CppTypeToScalarType<scalar_t>::value));
    c.resize(rows * g.n_mels);
    d.resize(rows * g.n_mels);
    pt.assign(g.n_freqs * kRows, scalar_t(0));
  }
};

// One work item: frames [t0, t1) of one item with `n_frames` valid frames and `len` samples.
template <typename scalar_t>
void chunk(const scalar_t* x, int64_t len, int64_t n_frames, int64_t t0, int64_t t1,
           const scalar_t* win, const MelBands<scalar_t>& bands, const Geometry& g,
           scalar_t amin, scalar_t* out, Scratch<scalar_t>& scratch) {
  const int64_t a = std::max<int64_t>(t0 - kHalo, 0);
  const int64_t e = std::min<int64_t>(t1 + kHalo, n_frames);
  const int64_t R = e - a, M = g.n_mels, F = g.n_freqs;

  // Windowed frames; samples outside [0, len) are zero (centre padding and batch padding alike).
  auto frames = scratch.frames.narrow(0, 0, R);
  scalar_t* fr = frames.template data_ptr<scalar_t>();
  for (int64_t r = 0; r < R; ++r) {
    scalar_t* row = fr + r * g.n_fft;
    const int64_t start = (a + r) * g.hop + g.offset;
    const int64_t k0 = std::clamp<int64_t>(-start, g.win_lo, g.win_hi);
    const int64_t k1 = std::clamp<int64_t>(len - start, k0, g.win_hi);
    std::fill(row, row + k0, scalar_t(0));
    for (int64_t k = k0; k < k1; ++k) row[k] = x[start + k] * win[k];
    std::fill(row + k1, row + g.n_fft, scalar_t(0));
  }
  const auto spec = at::fft_rfft(frames, g.n_fft, -1);
  TORCH_INTERNAL_ASSERT(spec.is_contiguous(), "rfft output expected contiguous");
  const scalar_t* sp = reinterpret_cast<const scalar_t*>(spec.const_data_ptr());  // (R, F, 2)

  // Static log-Mel of rows [a, e), kRows frames at a time: the power spectrum of the block is
  // stored frequency-major so that the sparse mel sums run across frames (independent lanes)
  // instead of along one filter (a serial reduction).
  scalar_t* c = scratch.c.data();
  scalar_t* d = scratch.d.data();
  scalar_t* pt = scratch.pt.data();
  for (int64_t r0 = 0; r0 < R; r0 += kRows) {
    const int64_t rb = std::min(kRows, R - r0);
    if (rb == kRows)
      power_lanes(sp + r0 * F * 2, F, pt);
    else
      power_lanes_partial(sp + r0 * F * 2, F, rb, pt);
    for (int64_t m = 0; m < M; ++m) {
      scalar_t acc[kRows];
      mel_lanes(pt, bands.weights + m * F, bands.lo[m], bands.hi[m], acc);
      for (int64_t r = 0; r < rb; ++r) c[(r0 + r) * M + m] = std::max(acc[r], amin);
    }
  }
  // (a NaN or Inf mel power, from samples the caller did not check, comes out NaN: the fast log
  // reads the bits of normal numbers only, and made NaN a finite wrong value. v - v is 0 for
  // every finite v and NaN otherwise; unlike a select on v, it leaves the loop vectorised: a
  // select made it 4.5x slower, this 5%, in a standalone loop at -O3)
  for (int64_t i = 0; i < R * M; ++i) {
    const scalar_t v = c[i];
    c[i] = log_positive(v) + (v - v);
  }

  // HTK regression delta (N = 2) with edges replicated at the item's own first and last frame.
  const int64_t last = n_frames - 1;
  auto delta_row = [&](const scalar_t* src, int64_t s, scalar_t* dst) {
    const scalar_t* p1 = src + (std::min(s + 1, last) - a) * M;
    const scalar_t* m1 = src + (std::max<int64_t>(s - 1, 0) - a) * M;
    const scalar_t* p2 = src + (std::min(s + 2, last) - a) * M;
    const scalar_t* m2 = src + (std::max<int64_t>(s - 2, 0) - a) * M;
    for (int64_t m = 0; m < M; ++m)
      dst[m] = ((p1[m] - m1[m]) + scalar_t(2) * (p2[m] - m2[m])) * scalar_t(0.1);
  };
  const int64_t ds0 = std::max<int64_t>(t0 - 2, 0), ds1 = std::min<int64_t>(t1 + 2, n_frames);
  for (int64_t s = ds0; s < ds1; ++s) delta_row(c, s, d + (s - a) * M);

  const int64_t plane = g.T * M;  // one channel of one item
  for (int64_t t = t0; t < t1; ++t) {
    std::memcpy(out + t * M, c + (t - a) * M, M * sizeof(scalar_t));
    std::memcpy(out + plane + t * M, d + (t - a) * M, M * sizeof(scalar_t));
    delta_row(d, t, out + 2 * plane + t * M);
  }
}

at::Tensor logmel_delta_cpu(const at::Tensor& waveform, const at::Tensor& lengths,
                            const at::Tensor& window, const at::Tensor& mel_fb,
                            int64_t hop_length, bool center, double amin) {
  check_cpu_float(waveform, "waveform");
  check_logmel_args(waveform, lengths, window, mel_fb);
  TORCH_CHECK(hop_length > 0, "hop_length must be positive, got ", hop_length);
  TORCH_CHECK(amin > 0, "amin must be positive, got ", amin);
  const int64_t B = waveform.size(0), N = waveform.size(1);
  TORCH_CHECK(lengths.size(0) == B, "lengths must have ", B, " entries, got ", lengths.size(0));

  Geometry g;
  g.n_fft = window.size(0);
  g.n_freqs = g.n_fft / 2 + 1;
  g.n_mels = mel_fb.size(0);
  g.hop = hop_length;
  g.T = num_frames(N, g.n_fft, hop_length, center);
  g.offset = center ? -(g.n_fft / 2) : 0;
  TORCH_CHECK(mel_fb.size(1) == g.n_freqs, "mel_fb must have n_fft // 2 + 1 = ", g.n_freqs,
              " columns, got ", mel_fb.size(1));
  TORCH_CHECK(g.T >= 1, "waveform of ", N, " samples is shorter than n_fft = ", g.n_fft);

  const auto x = waveform.contiguous();
  const auto win = window.contiguous();
  const auto fb = mel_fb.contiguous();
  const auto lens = lengths.to(at::kLong).contiguous();
  const int64_t* len_p = lens.data_ptr<int64_t>();

  auto out = at::empty({B, 3, g.T, g.n_mels}, waveform.options());

  AT_DISPATCH_FLOATING_TYPES(waveform.scalar_type(), "logmel_delta_cpu", [&] {
    const scalar_t* wp = win.data_ptr<scalar_t>();
    g.win_lo = 0;
    g.win_hi = g.n_fft;
    while (g.win_lo < g.n_fft && wp[g.win_lo] == 0) ++g.win_lo;
    while (g.win_hi > g.win_lo && wp[g.win_hi - 1] == 0) --g.win_hi;
    const auto bands = make_bands<scalar_t>(fb);

    struct Work { int64_t b, t0, t1, n_frames; };
    std::vector<Work> work;
    std::vector<int64_t> frames_of(B);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = len_p[b];
      TORCH_CHECK(len >= 0 && len <= N, "lengths[", b, "] = ", len, " is outside [0, ", N, "]");
      const int64_t nf = num_frames(len, g.n_fft, hop_length, center);
      frames_of[b] = nf;
      for (int64_t t0 = 0; t0 < nf; t0 += kChunk)
        work.push_back({b, t0, std::min(t0 + kChunk, nf), nf});
    }
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t item_stride = 3 * g.T * g.n_mels;
    at::parallel_for(0, static_cast<int64_t>(work.size()), 1, [&](int64_t begin, int64_t end) {
      SingleThreadedMKL one_mkl_thread;
      Scratch<scalar_t> scratch(g);
      for (int64_t i = begin; i < end; ++i) {
        const Work& w = work[i];
        chunk<scalar_t>(xp + w.b * N, len_p[w.b], w.n_frames, w.t0, w.t1, wp, bands, g,
                        static_cast<scalar_t>(amin), op + w.b * item_stride, scratch);
      }
    });
    // Frames past an item's end are zero.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t ch = 0; ch < 3; ++ch) {
        scalar_t* plane = op + b * item_stride + ch * g.T * g.n_mels;
        std::fill(plane + frames_of[b] * g.n_mels, plane + g.T * g.n_mels, scalar_t(0));
      }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ssa_fast, CPU, m) { m.impl("logmel_delta", &logmel_delta_cpu); }

}  // namespace ssa_fast
