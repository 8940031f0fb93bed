// CPU emulation of the CUDA logmel_delta kernel: runs the kernel's own block program
// (csrc/cuda/logmel_delta_tile.cuh) block by block with the host compiler. Built by
// test_logmel_cuda_source.py into a small shared library and called through ctypes.
//
// The threads of a block run one after another, each through its share of every loop issued
// since the last barrier (GPU semantics between barriers: a thread's own writes are visible to it,
// another thread's only after a barrier). Threads go in forward or reverse order. Shared memory is
// refilled with NaN before every block, so a read of shared memory nobody wrote, or that another
// thread wrote without a barrier in between, shows up in the output.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "cuda/logmel_delta_tile.cuh"

namespace {

class HostExec {
 public:
  HostExec(int threads, bool reverse) : threads_(threads), reverse_(reverse) {}
  template <class Fn>
  void strided(int n, Fn&& fn) const {
    phase_.emplace_back(n, std::function<void(int)>(fn));
  }
  void sync() const {
    for (int k = 0; k < threads_; ++k) {
      const int tid = reverse_ ? threads_ - 1 - k : k;
      for (const auto& [n, fn] : phase_)
        for (int i = tid; i < n; i += threads_) fn(i);
    }
    phase_.clear();
  }
  void finish() const { sync(); }

 private:
  int threads_;
  bool reverse_;
  mutable std::vector<std::pair<int, std::function<void(int)>>> phase_;
};

}  // namespace

extern "C" {

// out (B, 3, T, M) as the kernel writes it; returns the tile used (or -1 for a bad n_fft).
int ssa_logmel_emulate(const float* x, int64_t B, int64_t N, const int64_t* lengths,
                       const float* window, int n_fft, const float* fb, int n_mels, int hop,
                       int center, float amin, int tile, int threads, int reverse, float* out) {
  using namespace ssa_fast::logmel;
  if (!fft_size_supported(n_fft)) return -1;
  const Geometry g = plan(n_fft, n_mels, hop, center != 0, N, amin, 227 * 1024, tile);
  std::vector<int> bands(2 * n_mels);
  for (int m = 0; m < n_mels; ++m)
    band_range(fb + int64_t(m) * g.n_freqs, g.n_freqs, &bands[2 * m], &bands[2 * m + 1]);
  std::vector<float> smem(smem_layout(g).floats);
  const HostExec ex(threads, reverse != 0);
  for (int64_t block = 0; block < B * g.tiles_per_item; ++block) {
    smem.assign(smem.size(), std::numeric_limits<float>::quiet_NaN());
    tile_program(ex, g, block, x, lengths, window, fb, bands.data(), out, smem.data());
  }
  return g.tile;
}

// The geometry the CUDA launcher would choose: tile, group, shared memory bytes, T.
void ssa_logmel_plan(int n_fft, int n_mels, int hop, int center, int64_t N, int64_t smem_limit,
                     int64_t* result) {
  using namespace ssa_fast::logmel;
  const Geometry g = plan(n_fft, n_mels, hop, center != 0, N, 1e-10f, smem_limit);
  result[0] = g.tile;
  result[1] = g.group;
  result[2] = 4 * int64_t(smem_layout(g).floats);
  result[3] = g.T;
}

// power (n_fft / 2 + 1) of one frame through the kernel's FFT steps alone (bit-reversed load,
// FFT passes, real-FFT split).
int ssa_logmel_rfft_power(const float* frame, int n_fft, float* power) {
  using namespace ssa_fast::logmel;
  if (!fft_size_supported(n_fft)) return -1;
  const int half = n_fft / 2, bits = log2_exact(half);
  std::vector<Complex> tw(half), z(slot(half));
  for (int k = 0; k < half; ++k) tw[k] = twiddle(k, n_fft);
  for (int n = 0; n < half; ++n) z[slot(bit_reverse(n, bits))] = {frame[2 * n], frame[2 * n + 1]};
  for (int p = 0; p < fft_passes(bits); ++p)
    for (int j = 0; j < 1 << fft_pass_item_bits(bits, p); ++j)
      fft_pass(z.data(), tw.data(), half, bits, p, j);
  for (int k = 0; k <= half; ++k) power[k] = rfft_power(z.data(), tw.data(), half, k);
  return 0;
}

}  // extern "C"
