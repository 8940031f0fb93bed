// The fused 3-D log-Mel of one tile of frames: the whole per-block program of the CUDA kernel,
// written once for the GPU and for a CPU emulation of a block.
//
// Everything here is plain C++ with `__host__ __device__` markers: nvcc compiles it into the
// kernel (csrc/cuda/logmel_delta.cu), and the tests compile the same file with the host compiler
// and run it block by block against the reference and librosa (a GPU is not needed to check the
// arithmetic, the tiling or the indexing). The only per-target pieces are the "executor" that
// spreads a loop over the threads of a block and the barrier between loops:
//
//     ex.strided(n, f)   calls f(i) for i in [0, n), iteration i on thread i % blockDim
//     ex.sync()          __syncthreads()
//     ex.finish()        end of the block's program (nothing on the GPU)
//
// The emulation keeps the GPU's semantics between barriers: it runs each emulated thread's share
// of all the loops since the last barrier before the next thread starts, threads in forward or
// reverse order, with NaN in shared memory at block start. A missing barrier (one thread reading
// shared memory another thread writes in the same phase) then gives NaN or a result that depends
// on the order, which the tests catch by demanding bit-identical results across thread counts and
// orders. (Loops capture by value: the emulation runs a loop later than it is issued, after
// the loop variables around it may have moved on.)
//
// Per tile (frames [t0, t0 + tile) of one item, the item having nf frames):
//   1. frames [a, e) = [t0 - 4, t1 + 4) clamped to the item: the tile plus the halo the two delta
//      passes need (delta-delta at t reads delta at t +- 2, which reads static at t +- 4);
//   2. in groups of `group` frames: windowed samples packed as n_fft / 2 complex numbers in
//      bit-reversed order, an iterative radix-2 FFT of n_fft / 2 points (stages fused in pairs),
//      the real-FFT split into the n_fft / 2 + 1 bins, power, sparse mel product,
//      ln(max(., amin));
//   3. delta over [t0 - 2, t1 + 2), delta-delta and the three output channels over [t0, t1);
//      the halo frames are computed but never written, and the item's own last frame is
//      replicated (not the batch's);
//   4. rows of the tile at or past the item's end are written as zeros.
#pragma once

#include <math.h>
#include <stdint.h>

#include <cmath>

#if defined(__CUDACC__)
#define SSA_HD __host__ __device__ __forceinline__
#else
#define SSA_HD inline
#endif

namespace ssa_fast {
namespace logmel {

constexpr int kHalo = 4;        // static frames needed on each side of an output frame
constexpr int kThreads = 256;   // threads per block
constexpr int kMinFft = 256;    // supported n_fft: powers of two in [kMinFft, kMaxFft]
constexpr int kMaxFft = 2048;
constexpr int kGroupPoints = 4096;  // real samples transformed per group: 8 frames of 512 points
constexpr int kMaxTile = 64;        // output frames per block (halo overhead (64 + 8) / 64)
constexpr int kSmemTarget = 64 * 1024;  // preferred dynamic shared memory per block (occupancy)

struct alignas(8) Complex {
  float re, im;
};

SSA_HD Complex cadd(Complex a, Complex b) { return {a.re + b.re, a.im + b.im}; }
SSA_HD Complex csub(Complex a, Complex b) { return {a.re - b.re, a.im - b.im}; }
SSA_HD Complex cmul(Complex a, Complex b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}

SSA_HD bool fft_size_supported(int64_t n) {
  return n >= kMinFft && n <= kMaxFft && (n & (n - 1)) == 0;
}

// Where point i of a frame being transformed lives in shared memory: one pad slot after every 16
// points. The bit-reversed stores of a warp would otherwise fall on 2 of the 32 banks (16-way
// conflicts); padded, each half-warp hits 16 distinct bank pairs. The FFT passes keep runs of 16
// contiguous.
SSA_HD int slot(int i) { return i + (i >> 4); }

SSA_HD int log2_exact(int n) {
  int bits = 0;
  while ((1 << bits) < n) ++bits;
  return bits;
}

// The low `bits` bits of i in reverse order.
SSA_HD unsigned bit_reverse(unsigned i, int bits) {
#if defined(__CUDA_ARCH__)
  return __brev(i) >> (32 - bits);
#else
  unsigned r = 0;
  for (int b = 0; b < bits; ++b, i >>= 1) r = (r << 1) | (i & 1u);
  return r;
#endif
}

// exp(-2 pi i k / n). 2k/n is exact in float for n a power of two, so sincospif sees the exact
// angle; the host computes the same value in double and rounds (they differ by at most an ulp).
SSA_HD Complex twiddle(int k, int n) {
#if defined(__CUDA_ARCH__)
  float s, c;
  sincospif(-2.0f * static_cast<float>(k) / static_cast<float>(n), &s, &c);
  return {c, s};
#else
  const double angle = -2.0 * 3.14159265358979323846 * k / n;
  return {static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))};
#endif
}

SSA_HD int64_t frame_count(int64_t n, int n_fft, int hop, bool center) {
  const int64_t padded = center ? n + 2 * (n_fft / 2) : n;  // (as num_frames in checks.h)
  return padded >= n_fft ? 1 + (padded - n_fft) / hop : 0;
}

// Shape of the problem and of the launch; one value passed to every block.
struct Geometry {
  int n_fft, half, bits;  // half = n_fft / 2 points of the complex FFT, bits = log2(half)
  int n_freqs, n_mels;    // F = n_fft / 2 + 1 bins, M filters
  int hop, tile, group;   // output frames per block, frames per FFT group
  int T;                  // frames of the output (of the batch's N samples)
  int tiles_per_item;
  int64_t n_samples;      // N: row stride of the waveform
  int64_t offset;         // first sample of frame 0 (-n_fft / 2 when centred)
  bool center;
  float amin;
};

// Dynamic shared memory of one block, in floats from its start; complex arrays first (8-byte
// alignment).
struct SmemLayout {
  int twiddles;  // half Complex: exp(-2 pi i k / n_fft), k < half
  int fft;       // group * slot(half) Complex: the frames being transformed
  int window;    // n_fft floats
  int power;     // group * F floats
  int stat;      // (tile + 2 kHalo) * M: static log-Mel of the tile and its halo
  int delta;     // (tile + 2 kHalo) * M: delta, same rows
  int floats;    // total
};

SSA_HD SmemLayout smem_layout(const Geometry& g) {
  const int rows = g.tile + 2 * kHalo;
  SmemLayout s;
  s.twiddles = 0;
  s.fft = s.twiddles + 2 * g.half;
  s.window = s.fft + 2 * slot(g.half) * g.group;
  s.power = s.window + g.n_fft;
  s.stat = s.power + g.n_freqs * g.group;
  s.delta = s.stat + rows * g.n_mels;
  s.floats = s.delta + rows * g.n_mels;
  return s;
}

// Host: the geometry of a call. The tile is the largest power of two <= kMaxTile whose shared
// memory stays within kSmemTarget (several blocks per SM); when not even tile 2 does (many
// filters), the largest within `smem_limit` (the device's opt-in maximum), since at tile 1 eight
// of nine frames would be halo. Tile 1 always fits (9 rows of at most 1025 filters).
// `tile_override` > 0 forces a tile (the tests use it to put item ends at tile edges).
inline Geometry plan(int n_fft, int n_mels, int hop, bool center, int64_t n_samples, float amin,
                     int64_t smem_limit, int tile_override = 0) {
  Geometry g;
  g.n_fft = n_fft;
  g.half = n_fft / 2;
  g.bits = log2_exact(g.half);
  g.n_freqs = g.half + 1;
  g.n_mels = n_mels;
  g.hop = hop;
  g.group = kGroupPoints / n_fft > 1 ? kGroupPoints / n_fft : 1;
  g.center = center;
  g.amin = amin;
  g.n_samples = n_samples;
  g.offset = center ? -(n_fft / 2) : 0;
  g.T = static_cast<int>(frame_count(n_samples, n_fft, hop, center));
  if (tile_override > 0) {
    g.tile = tile_override;
  } else {
    g.tile = kMaxTile;
    while (g.tile > 1 && 4 * int64_t(smem_layout(g).floats) > kSmemTarget) g.tile /= 2;
    if (g.tile == 1) {
      g.tile = kMaxTile;
      while (g.tile > 1 && 4 * int64_t(smem_layout(g).floats) > smem_limit) g.tile /= 2;
    }
  }
  g.tiles_per_item = (g.T + g.tile - 1) / g.tile;
  return g;
}

// Filter m is non-zero only on bins [lo, hi) (a triangle); an all-zero filter gives lo == hi.
SSA_HD void band_range(const float* row, int n_freqs, int* lo, int* hi) {
  int l = 0, h = n_freqs;
  while (l < n_freqs && row[l] == 0.0f) ++l;
  while (h > l && row[h - 1] == 0.0f) --h;
  *lo = l;
  *hi = h;
}

// Windowed sample k of a frame starting at sample `start`; zero outside the item's [0, len)
// (centre padding and batch padding alike).
SSA_HD float windowed(const float* x, int64_t len, int64_t start, int k, const float* window) {
  const int64_t i = start + k;
  return (i >= 0 && i < len) ? x[i] * window[k] : 0.0f;
}

// Radix-2 decimation-in-time butterfly j (of half / 2) of the stage with span m (1, 2, 4, ...),
// in place on one frame's `half` points (at slot(i)) held in bit-reversed input order.
SSA_HD void butterfly(Complex* z, const Complex* tw, int half, int m, int j) {
  const int pos = j & (m - 1);
  const int i0 = ((j - pos) << 1) + pos;
  const int i1 = i0 + m;
  const Complex w = tw[pos * (half / m)];  // exp(-2 pi i pos / (2 m))
  const Complex t = cmul(w, z[slot(i1)]);
  const Complex u = z[slot(i0)];
  z[slot(i0)] = cadd(u, t);
  z[slot(i1)] = csub(u, t);
}

// The radix-2 stages with spans m and 2m fused (half the shared-memory passes and barriers):
// item j (of half / 4) owns the points i0, i0 + m, i0 + 2m, i0 + 3m, which those two stages
// combine only among themselves.
SSA_HD void butterfly_pair(Complex* z, const Complex* tw, int half, int m, int j) {
  const int pos = j & (m - 1);
  const int i0 = ((j - pos) << 2) + pos;
  Complex a = z[slot(i0)], b = z[slot(i0 + m)], c = z[slot(i0 + 2 * m)], d = z[slot(i0 + 3 * m)];
  const Complex w1 = tw[pos * (half / m)];  // span m: exp(-2 pi i pos / (2 m))
  Complex t = cmul(w1, b);
  b = csub(a, t);
  a = cadd(a, t);
  t = cmul(w1, d);
  d = csub(c, t);
  c = cadd(c, t);
  // span 2m: exp(-2 pi i pos / (4 m)) and exp(-2 pi i (pos + m) / (4 m))
  const int s = half / (2 * m);
  t = cmul(tw[pos * s], c);
  c = csub(a, t);
  a = cadd(a, t);
  t = cmul(tw[(pos + m) * s], d);
  d = csub(b, t);
  b = cadd(b, t);
  z[slot(i0)] = a;
  z[slot(i0 + m)] = b;
  z[slot(i0 + 2 * m)] = c;
  z[slot(i0 + 3 * m)] = d;
}

// The FFT of half = 2^bits points runs in (bits + 1) / 2 passes with a barrier after each: a
// single radix-2 stage first when bits is odd, then fused pairs of stages. Pass p has
// 2^fft_pass_item_bits items per frame; fft_pass runs item j of it.
SSA_HD int fft_passes(int bits) { return (bits + 1) / 2; }
SSA_HD bool fft_pass_single(int bits, int p) { return (bits & 1) && p == 0; }
SSA_HD int fft_pass_item_bits(int bits, int p) {
  return fft_pass_single(bits, p) ? bits - 1 : bits - 2;
}
SSA_HD void fft_pass(Complex* z, const Complex* tw, int half, int bits, int p, int j) {
  if (fft_pass_single(bits, p)) {
    butterfly(z, tw, half, 1, j);
  } else {
    const int m = (bits & 1) ? 1 << (2 * p - 1) : 1 << (2 * p);
    butterfly_pair(z, tw, half, m, j);
  }
}

// |X[k]|^2 for bin k in [0, half] of the n_fft-point real FFT, from Z = FFT(x[2n] + i x[2n+1]):
// X[k] = E[k] + W^k O[k], E = (Z[k] + conj Z[half-k]) / 2, O = -i (Z[k] - conj Z[half-k]) / 2.
SSA_HD float rfft_power(const Complex* z, const Complex* tw, int half, int k) {
  const Complex zk = z[slot(k & (half - 1))];
  const Complex zr = z[slot((half - k) & (half - 1))];
  const Complex zc = {zr.re, -zr.im};
  const Complex even = {0.5f * (zk.re + zc.re), 0.5f * (zk.im + zc.im)};
  const Complex odd = {0.5f * (zk.im - zc.im), -0.5f * (zk.re - zc.re)};
  const Complex w = k < half ? tw[k] : Complex{-1.0f, 0.0f};
  const Complex xk = cadd(even, cmul(w, odd));
  return xk.re * xk.re + xk.im * xk.im;
}

// ln(max(sum_{f in [lo, hi)} fb[f] * power[f], amin)).
SSA_HD float log_mel(const float* power, const float* fb_row, int lo, int hi, float amin) {
  float acc = 0.0f;
  for (int f = lo; f < hi; ++f) acc += fb_row[f] * power[f];
  return logf(acc < amin ? amin : acc);  // (not fmaxf: a NaN power must stay NaN)
}

// HTK regression delta (N = 2) of frame s, filter m, over rows of M values where row r holds frame
// a + r; neighbours are clamped to the item's own frames [0, last].
SSA_HD float delta_at(const float* src, int a, int last, int s, int m, int M) {
  const int p1 = (s + 1 < last ? s + 1 : last) - a;
  const int p2 = (s + 2 < last ? s + 2 : last) - a;
  const int m1 = (s - 1 > 0 ? s - 1 : 0) - a;
  const int m2 = (s - 2 > 0 ? s - 2 : 0) - a;
  return ((src[p1 * M + m] - src[m1 * M + m]) + 2.0f * (src[p2 * M + m] - src[m2 * M + m])) *
         0.1f;
}

// The program of block `block` (item block / tiles_per_item, tile block % tiles_per_item).
// x (B, N), lengths (B,) samples per item, window (n_fft,), fb (M, F), bands (M, 2) = [lo, hi)
// of each filter, out (B, 3, T, M); smem as smem_layout(g).
template <class Exec>
SSA_HD void tile_program(const Exec& ex, const Geometry& g, int64_t block, const float* x,
                         const int64_t* lengths, const float* window, const float* fb,
                         const int* bands, float* out, float* smem) {
  const int M = g.n_mels, F = g.n_freqs, half = g.half;
  const int64_t b = block / g.tiles_per_item;
  const int t0 = static_cast<int>(block % g.tiles_per_item) * g.tile;
  int64_t len = lengths[b];
  len = len < 0 ? 0 : (len > g.n_samples ? g.n_samples : len);  // memory safety only
  const int nf = static_cast<int>(frame_count(len, g.n_fft, g.hop, g.center));
  const int t_end = t0 + g.tile < g.T ? t0 + g.tile : g.T;  // rows of the output this block owns
  const int t1 = t_end < nf ? t_end : nf;                   // ... of which the item has
  const int64_t plane = int64_t(g.T) * M;
  float* o = out + b * 3 * plane;

  // Rows past the item's end: zeros (all rows when the item ends before the tile).
  const int z0 = t1 > t0 ? t1 : t0;
  const int zn = (t_end - z0) * M;
  ex.strided(3 * zn, [=](int i) {
    const int ch = i / zn, r = i - ch * zn;
    o[ch * plane + int64_t(z0) * M + r] = 0.0f;
  });
  if (t1 <= t0) {  // the same for every thread of the block
    ex.finish();
    return;
  }

  const SmemLayout L = smem_layout(g);
  Complex* tw = reinterpret_cast<Complex*>(smem + L.twiddles);
  Complex* fft = reinterpret_cast<Complex*>(smem + L.fft);
  float* win = smem + L.window;
  float* power = smem + L.power;
  float* stat = smem + L.stat;
  float* dlt = smem + L.delta;

  ex.strided(half, [=](int k) { tw[k] = twiddle(k, g.n_fft); });
  ex.strided(g.n_fft, [=](int k) { win[k] = window[k]; });
  ex.sync();

  const int a = t0 - kHalo > 0 ? t0 - kHalo : 0;
  const int e = t1 + kHalo < nf ? t1 + kHalo : nf;
  const float* xb = x + b * g.n_samples;
  for (int r0 = 0; r0 < e - a; r0 += g.group) {
    const int G = e - a - r0 < g.group ? e - a - r0 : g.group;
    // Frame r0 + f: samples (2n, 2n + 1) as one complex point, stored at bit-reversed n.
    ex.strided(G * half, [=](int i) {
      const int f = i >> g.bits, n = i & (half - 1);
      const int64_t start = int64_t(a + r0 + f) * g.hop + g.offset;
      fft[f * slot(half) + slot(bit_reverse(n, g.bits))] = {
          windowed(xb, len, start, 2 * n, win), windowed(xb, len, start, 2 * n + 1, win)};
    });
    ex.sync();
    for (int p = 0; p < fft_passes(g.bits); ++p) {
      const int item_bits = fft_pass_item_bits(g.bits, p);
      ex.strided(G << item_bits, [=](int j) {
        const int f = j >> item_bits;
        fft_pass(fft + f * slot(half), tw, half, g.bits, p, j & ((1 << item_bits) - 1));
      });
      ex.sync();
    }
    ex.strided(G * F, [=](int i) {
      const int f = i / F, k = i - f * F;
      power[f * F + k] = rfft_power(fft + f * slot(half), tw, half, k);
    });
    ex.sync();
    // No barrier after the mel loop: the next group's first loop writes only `fft`, and `power`
    // is rewritten two barriers later.
    ex.strided(G * M, [=](int i) {
      const int f = i / M, m = i - f * M;
      stat[(r0 + f) * M + m] =
          log_mel(power + f * F, fb + int64_t(m) * F, bands[2 * m], bands[2 * m + 1], g.amin);
    });
  }
  ex.sync();

  const int last = nf - 1;
  const int d0 = t0 - 2 > 0 ? t0 - 2 : 0;
  const int d1 = t1 + 2 < nf ? t1 + 2 : nf;
  ex.strided((d1 - d0) * M, [=](int i) {
    const int s = d0 + i / M, m = i % M;
    dlt[(s - a) * M + m] = delta_at(stat, a, last, s, m, M);
  });
  ex.sync();
  ex.strided((t1 - t0) * M, [=](int i) {
    const int t = t0 + i / M, m = i % M;
    const int64_t at = int64_t(t) * M + m;
    o[at] = stat[(t - a) * M + m];
    o[plane + at] = dlt[(t - a) * M + m];
    o[2 * plane + at] = delta_at(dlt, a, last, t, m, M);
  });
  ex.finish();
}

}  // namespace logmel
}  // namespace ssa_fast
