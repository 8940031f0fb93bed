// The second CUDA log-Mel block program (docs/design.md section 10.1, "design chosen"): the FFT in
// registers, written once for the GPU (csrc/cuda/logmel_delta_regfft.cu) and for the CPU
// emulation the tests run (tests/kernels/logmel_cuda_emulate.cpp), like logmel_delta_tile.cuh.
//
// The executor of logmel_delta_tile.cuh gains one step, a loop over *teams*: P consecutive threads
// of a warp (P = 8, 16 or 32) that own one frame each and synchronise among themselves only:
//
//     ex.strided(n, f)        f(i) for i in [0, n), iteration i on thread i % blockDim
//     ex.teams(n, P, f)       f(team, t, lane) for t in [0, n) and lane in [0, P): team t on the
//                             threads [(t % (blockDim / P)) P, + P), lane = thread % P
//     team.sync()             inside f: __syncwarp of the team's P lanes (no block barrier)
//     ex.sync(), ex.finish()  as before
//
// Registers live across team.sync(): the emulation runs each lane of a team as a coroutine that
// stops at every team.sync(), lanes in forward or reverse order, and the teams between two block
// barriers one after another (forward or reverse), with NaN in shared memory at block start; a
// missing team or block barrier then shows up as NaN or as a result that depends on the order.
//
// Per tile (frames [t0, t1) of one item with nf frames, plus the delta halo, as in
// logmel_delta_tile.cuh), in groups of G = blockDim / P frames:
//   1. the samples of the group's frames loaded once, coalesced, into shared memory (the window
//      overlap of neighbouring frames read once; zeros outside the item's [0, len)), a block
//      barrier;
//   2. each team transforms one frame: its n_fft / 2 = N1 x N2 complex points (samples 2n, 2n + 1
//      windowed) by a N1-point DFT in registers per column, the twiddles, one transpose through
//      shared memory, a N2-point DFT in registers per row (lane l owns columns l, l + P, ... then
//      rows l, l + P, ...); the spectrum back to shared memory for the mirror bins of the real
//      split; power; the frame's filters dealt to its lanes balanced by band width (deal_filters,
//      once per call), each a banded sum over its non-zero bins; ln(max(., amin)) into the tile's
//      static rows. Only team barriers;
//   3. after all groups one block barrier; each thread owns one band over a run of kDeltaRun
//      output frames and slides the delta window in registers (same formula, clamping and
//      rounding as logmel_delta_tile.cuh), writing the three channels (consecutive threads,
//      consecutive bands: coalesced);
//   4. rows at or past the item's end written as zeros.
#pragma once

#include "cuda/logmel_delta_tile.cuh"

// Full unrolling keeps the DFTs' arrays in registers (constant indices); only the device pass
// sees the pragma (the host compiler warns about an unknown one).
#if defined(__CUDA_ARCH__)
#define SSA_UNROLL _Pragma("unroll")
#else
#define SSA_UNROLL
#endif

namespace ssa_fast {
namespace logmel {
namespace regfft {

constexpr int kThreads = 256;   // threads per block (whole warps: teams never straddle warps)
constexpr int kDeltaRun = 8;    // output frames per thread in the delta step
constexpr int kSmemTarget = 76 * 1024;  // 3 blocks of 256 threads per SM on an H100

// The factorisation of n_fft / 2 = N1 x N2 complex points; P = min(N1, N2) lanes per frame.
struct Split {
  int n1, n2, lanes;
};
SSA_HD Split split_for(int n_fft) {
  switch (n_fft) {
    case 256: return {8, 16, 8};
    case 512: return {16, 16, 16};
    case 1024: return {16, 32, 16};
    default: return {32, 32, 32};  // 2048
  }
}

// cos(2 pi j / 32) for integer j (exact float constants; j is a compile-time constant wherever a
// DFT in registers calls it, so the switch folds away).
SSA_HD float cos32(int j) {
  j &= 31;
  if (j > 16) j = 32 - j;
  const bool neg = j > 8;
  if (neg) j = 16 - j;
  float c = 0.0f;
  switch (j) {
    case 0: c = 1.0f; break;
    case 1: c = 0.980785280403230449126f; break;
    case 2: c = 0.923879532511286756128f; break;
    case 3: c = 0.831469612302545237079f; break;
    case 4: c = 0.707106781186547524401f; break;
    case 5: c = 0.555570233019602224743f; break;
    case 6: c = 0.382683432365089771728f; break;
    case 7: c = 0.195090322016128267848f; break;
    default: c = 0.0f; break;
  }
  return neg ? -c : c;
}

// exp(-2 pi i k / R) for R | 32.
template <int R>
SSA_HD Complex root(int k) {
  const int j = k * (32 / R);
  return {cos32(j), -cos32(j - 8)};  // sin(x) = cos(x - pi / 2)
}

// In-place R-point DFT of v (natural order in and out): radix-2 decimation in time, fully
// unrolled so that v stays in registers; the trivial twiddles (1, -i) cost no multiply.
template <int R>
SSA_HD void dft_regs(Complex (&v)[R]) {
  static_assert(R == 8 || R == 16 || R == 32, "DFT sizes 8, 16, 32");
  constexpr int bits = R == 8 ? 3 : (R == 16 ? 4 : 5);
SSA_UNROLL
  for (int i = 0; i < R; ++i) {
    int j = 0;
SSA_UNROLL
    for (int b = 0; b < bits; ++b) j |= ((i >> b) & 1) << (bits - 1 - b);
    if (i < j) {
      const Complex t = v[i];
      v[i] = v[j];
      v[j] = t;
    }
  }
SSA_UNROLL
  for (int s = 0; s < bits; ++s) {
    const int m = 1 << s;
SSA_UNROLL
    for (int j = 0; j < R / 2; ++j) {
      const int pos = j & (m - 1);
      const int i0 = ((j - pos) << 1) + pos, i1 = i0 + m;
      const int k = pos * (R / (2 * m));
      Complex t = v[i1];
      if (k != 0) t = 4 * k == R ? Complex{t.im, -t.re} : cmul(root<R>(k), t);
      v[i1] = csub(v[i0], t);
      v[i0] = cadd(v[i0], t);
    }
  }
}

// exp(-2 pi i m / half) for m in [0, half), from tw[k] = exp(-2 pi i k / n_fft), k < half.
SSA_HD Complex half_root(const Complex* tw, int half, int m) {
  const int k = 2 * m;
  if (k < half) return tw[k];
  const Complex w = tw[k - half];
  return {-w.re, -w.im};
}

// |X[k]|^2 of the real FFT from Z[k], Z[half - k] (as rfft_power in logmel_delta_tile.cuh) and
// w = exp(-2 pi i k / n_fft).
SSA_HD float split_power(Complex zk, Complex zr, Complex w) {
  const Complex zc = {zr.re, -zr.im};
  const Complex even = {0.5f * (zk.re + zc.re), 0.5f * (zk.im + zc.im)};
  const Complex odd = {0.5f * (zk.im - zc.im), -0.5f * (zk.re - zc.re)};
  const Complex xk = cadd(even, cmul(w, odd));
  return xk.re * xk.re + xk.im * xk.im;
}

// The mel filters of a frame dealt to its P lanes (P <= 32), balanced by work (band width + 1):
// the last (widest) filter first, each to the lane with the least work so far, ties to the
// lowest lane. deal[l] .. deal[l + 1] index lane l's filters in deal[P + 1 ..] (M entries).
// For the 40 Slaney filters at n_fft 512 the busiest of 16 lanes sums 36 bins (the widest
// filter; round-robin dealing: 52; the mean: 31). The emulation runs this; the GPU the same
// choices by one warp (deal_filters_warp in logmel_delta_regfft.cu). Which lane computes a filter
// does not change its value.
SSA_HD int deal_lane(const int* load, int P) {
  int best = 0;
  for (int l = 1; l < P; ++l)
    if (load[l] < load[best]) best = l;
  return best;
}
SSA_HD void deal_filters(const int* bands, int M, int P, int* deal) {
  int load[32], count[32];
  for (int l = 0; l < P; ++l) load[l] = count[l] = 0;
  for (int m = M - 1; m >= 0; --m) {
    const int l = deal_lane(load, P);
    load[l] += bands[2 * m + 1] - bands[2 * m] + 1;
    ++count[l];
  }
  deal[0] = 0;
  for (int l = 0; l < P; ++l) deal[l + 1] = deal[l] + count[l];
  for (int l = 0; l < P; ++l) load[l] = count[l] = 0;
  for (int m = M - 1; m >= 0; --m) {  // the same choices again, now placing each filter
    const int l = deal_lane(load, P);
    load[l] += bands[2 * m + 1] - bands[2 * m] + 1;
    deal[P + 1 + deal[l] + count[l]++] = m;
  }
}

// Dynamic shared memory of one block, in floats (complex arrays first: 8-byte alignment).
struct SmemLayout {
  int twiddles;  // half Complex: exp(-2 pi i k / n_fft), k < half
  int frames;    // group * n1 * (n2 + 1) Complex: a frame's transpose, then spectrum, then power
  int window;    // n_fft floats
  int samples;   // samples_span(g) floats: the group's frames, overlaps once
  int stat;      // (tile + 2 kHalo) * M: static log-Mel of the tile and its halo
  int floats;
};

// Samples of frame f of a group start at f * stride in shared memory: frames that overlap
// (hop <= n_fft) share their samples, frames with gaps between them are packed.
SSA_HD int sample_stride(const Geometry& g) { return g.hop < g.n_fft ? g.hop : g.n_fft; }
SSA_HD int frame_floats(int n_fft) {
  const Split s = split_for(n_fft);
  return 2 * s.n1 * (s.n2 + 1);
}

SSA_HD SmemLayout layout(const Geometry& g) {
  SmemLayout s;
  s.twiddles = 0;
  s.frames = s.twiddles + 2 * g.half;
  s.window = s.frames + g.group * frame_floats(g.n_fft);
  s.samples = s.window + g.n_fft;
  s.stat = s.samples + (g.group - 1) * sample_stride(g) + g.n_fft;
  s.floats = s.stat + (g.tile + 2 * kHalo) * g.n_mels;
  return s;
}

// Host: the geometry of a call (as logmel::plan, with this program's group and layout): the
// largest tile <= kMaxTile within kSmemTarget, else within the device's limit.
inline Geometry plan(int n_fft, int n_mels, int hop, bool center, int64_t n_samples, float amin,
                     int64_t smem_limit, int tile_override = 0) {
  Geometry g = logmel::plan(n_fft, n_mels, hop, center, n_samples, amin, smem_limit, 1);
  g.group = kThreads / split_for(n_fft).lanes;
  if (tile_override > 0) {
    g.tile = tile_override;
  } else {
    g.tile = kMaxTile;
    while (g.tile > 1 && 4 * int64_t(layout(g).floats) > kSmemTarget) g.tile /= 2;
    if (g.tile == 1) {
      g.tile = kMaxTile;
      while (g.tile > 1 && 4 * int64_t(layout(g).floats) > smem_limit) g.tile /= 2;
    }
  }
  g.tiles_per_item = (g.T + g.tile - 1) / g.tile;
  return g;
}

// One frame through the FFT, power and mel by the P lanes of a team (split N1 x N2). s: the
// frame's samples (zeros outside the item), win: the window, z: the frame's area of
// frame_floats(n_fft) floats, tw: exp(-2 pi i k / n_fft), deal: deal_filters' output for P
// lanes; writes stat_row[m] for every filter.
template <int N1, int N2, class Team>
SSA_HD void frame_program(const Team& team, int lane, const float* s, const float* win,
                          Complex* z, const Complex* tw, const float* fb, const int* bands,
                          const int* deal, float amin, float* stat_row) {
  constexpr int P = N1 < N2 ? N1 : N2;
  constexpr int half = N1 * N2, F = half + 1, stride = N2 + 1;
  // Columns n2 = lane + P q: z[n1 N2 + n2] for n1 < N1, a N1-point DFT, the twiddles
  // exp(-2 pi i n2 k1 / half), stored as row k1 of the transpose.
SSA_UNROLL
  for (int q = 0; q < N2 / P; ++q) {
    const int n2 = lane + q * P;
    Complex v[N1];
SSA_UNROLL
    for (int n1 = 0; n1 < N1; ++n1) {
      const int n = 2 * (n1 * N2 + n2);
      v[n1] = {s[n] * win[n], s[n + 1] * win[n + 1]};
    }
    dft_regs<N1>(v);
    z[n2] = v[0];
SSA_UNROLL
    for (int k1 = 1; k1 < N1; ++k1) z[k1 * stride + n2] = cmul(half_root(tw, half, n2 * k1), v[k1]);
  }
  team.sync();
  // Rows k1 = lane + P q: a N2-point DFT gives X[k1 + N1 k2], k2 < N2.
  Complex x[N1 / P][N2];
SSA_UNROLL
  for (int q = 0; q < N1 / P; ++q) {
    const int k1 = lane + q * P;
SSA_UNROLL
    for (int n2 = 0; n2 < N2; ++n2) x[q][n2] = z[k1 * stride + n2];
    dft_regs<N2>(x[q]);
  }
  team.sync();
SSA_UNROLL
  for (int q = 0; q < N1 / P; ++q)
SSA_UNROLL
    for (int k2 = 0; k2 < N2; ++k2) z[lane + q * P + N1 * k2] = x[q][k2];
  team.sync();
  // Bins k = lane + P j <= half of the real FFT: the mirror bin half - k is another lane's.
  constexpr int J = half / P + 1;
  float pw[J];
SSA_UNROLL
  for (int j = 0; j < J; ++j) {
    const int k = lane + j * P;
    pw[j] = 0.0f;
    if (k <= half)
      pw[j] = split_power(z[k & (half - 1)], z[(half - k) & (half - 1)],
                          k < half ? tw[k] : Complex{-1.0f, 0.0f});
  }
  team.sync();
  float* power = reinterpret_cast<float*>(z);
SSA_UNROLL
  for (int j = 0; j < J; ++j)
    if (lane + j * P <= half) power[lane + j * P] = pw[j];
  team.sync();
  for (int i = deal[lane]; i < deal[lane + 1]; ++i) {
    const int m = deal[P + 1 + i];
    stat_row[m] = log_mel(power, fb + int64_t(m) * F, bands[2 * m], bands[2 * m + 1], amin);
  }
}

// The program of block `block`, arguments as logmel::tile_program, except that `bands` is
// followed by deal_filters' output for this n_fft's lanes (bands_size entries in all); smem as
// layout(g).
SSA_HD int bands_size(int M, int n_fft) { return 3 * M + split_for(n_fft).lanes + 1; }

template <int N1, int N2, class Exec>
SSA_HD void tile_program(const Exec& ex, const Geometry& g, int64_t block, const float* x,
                         const int64_t* lengths, const float* window, const float* fb,
                         const int* bands, float* out, float* smem) {
  constexpr int P = N1 < N2 ? N1 : N2;
  const int M = g.n_mels, half = g.half, n_fft = g.n_fft;
  const int64_t b = block / g.tiles_per_item;
  const int t0 = static_cast<int>(block % g.tiles_per_item) * g.tile;
  int64_t len = lengths[b];
  len = len < 0 ? 0 : (len > g.n_samples ? g.n_samples : len);  // memory safety only
  const int nf = static_cast<int>(frame_count(len, g.n_fft, g.hop, g.center));
  const int t_end = t0 + g.tile < g.T ? t0 + g.tile : g.T;
  const int t1 = t_end < nf ? t_end : nf;
  const int64_t plane = int64_t(g.T) * M;
  float* o = out + b * 3 * plane;

  const int z0 = t1 > t0 ? t1 : t0;
  const int zn = (t_end - z0) * M;
  ex.strided(3 * zn, [=](int i) {
    const int ch = i / zn, r = i - ch * zn;
    o[ch * plane + int64_t(z0) * M + r] = 0.0f;
  });
  if (t1 <= t0) {
    ex.finish();
    return;
  }

  const SmemLayout L = layout(g);
  Complex* tw = reinterpret_cast<Complex*>(smem + L.twiddles);
  Complex* frames = reinterpret_cast<Complex*>(smem + L.frames);
  float* win = smem + L.window;
  float* samples = smem + L.samples;
  float* stat = smem + L.stat;
  const int per_frame = frame_floats(n_fft) / 2;  // Complex
  const int stride = sample_stride(g);

  ex.strided(half, [=](int k) { tw[k] = twiddle(k, n_fft); });
  ex.strided(n_fft, [=](int k) { win[k] = window[k]; });

  const int a = t0 - kHalo > 0 ? t0 - kHalo : 0;
  const int e = t1 + kHalo < nf ? t1 + kHalo : nf;
  const float* xb = x + b * g.n_samples;
  for (int r0 = 0; r0 < e - a; r0 += g.group) {
    const int G = e - a - r0 < g.group ? e - a - r0 : g.group;
    // (the barrier also ends the previous group's reads of `samples`)
    ex.sync();
    const int64_t start0 = int64_t(a + r0) * g.hop + g.offset;
    ex.strided((G - 1) * stride + n_fft, [=](int i) {
      int64_t at = start0 + i;
      if (g.hop > n_fft) {  // packed frames: frame i / n_fft, sample i % n_fft of it
        const int f = i / n_fft;
        at = start0 + int64_t(f) * g.hop + (i - f * n_fft);
      }
      samples[i] = (at >= 0 && at < len) ? xb[at] : 0.0f;
    });
    ex.sync();
    ex.teams(G, P, [=](const auto& team, int f, int lane) {
      frame_program<N1, N2>(team, lane, samples + f * stride, win, frames + f * per_frame, tw,
                            fb, bands, bands + 2 * M, g.amin, stat + (r0 + f) * M);
    });
  }
  ex.sync();

  // Deltas: thread item i owns band m = i % M over the output frames [c0, c1) of run i / M; the
  // delta values at the clamped frames t - 2 .. t + 2 slide in registers.
  const int last = nf - 1;
  const int runs = (t1 - t0 + kDeltaRun - 1) / kDeltaRun;
  ex.strided(runs * M, [=](int i) {
    const int m = i % M;
    const int c0 = t0 + (i / M) * kDeltaRun;
    const int c1 = c0 + kDeltaRun < t1 ? c0 + kDeltaRun : t1;
    const auto clamp = [last](int s) { return s < 0 ? 0 : (s > last ? last : s); };
    float d[5];  // delta at clamp(t - 2 + j)
SSA_UNROLL
    for (int j = 0; j < 4; ++j) d[j + 1] = delta_at(stat, a, last, clamp(c0 - 2 + j), m, M);
    for (int t = c0; t < c1; ++t) {
SSA_UNROLL
      for (int j = 0; j < 4; ++j) d[j] = d[j + 1];
      d[4] = delta_at(stat, a, last, clamp(t + 2), m, M);
      const int64_t at = int64_t(t) * M + m;
      o[at] = stat[(t - a) * M + m];
      o[plane + at] = d[2];
      o[2 * plane + at] = ((d[3] - d[1]) + 2.0f * (d[4] - d[0])) * 0.1f;
    }
  });
  ex.finish();
}

// n_fft -> the program's instantiation (a power of two in [kMinFft, kMaxFft]).
template <class Exec>
SSA_HD void tile_program_for(const Exec& ex, const Geometry& g, int64_t block, const float* x,
                             const int64_t* lengths, const float* window, const float* fb,
                             const int* bands, float* out, float* smem) {
  switch (g.n_fft) {
    case 256: tile_program<8, 16>(ex, g, block, x, lengths, window, fb, bands, out, smem); break;
    case 512: tile_program<16, 16>(ex, g, block, x, lengths, window, fb, bands, out, smem); break;
    case 1024: tile_program<16, 32>(ex, g, block, x, lengths, window, fb, bands, out, smem); break;
    default: tile_program<32, 32>(ex, g, block, x, lengths, window, fb, bands, out, smem); break;
  }
}

}  // namespace regfft
}  // namespace logmel
}  // namespace ssa_fast
