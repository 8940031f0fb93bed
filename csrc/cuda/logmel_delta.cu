// 3-D log-Mel on CUDA in one launch: waveform -> windowed frames -> FFT in shared memory ->
// power -> sparse mel -> log -> delta -> delta-delta -> (B, 3, T, n_mels).
//
// A block owns a tile of frames of one item (logmel_delta_tile.cuh holds its whole program, shared
// with the CPU emulation the tests run). Memory traffic is the waveform read (overlapping frames of
// a tile are served by L1, so DRAM reads it about once) plus the output written once; the FFT
// of n_fft points (powers of two, 256 .. 2048) runs in float32 in shared memory. Other sizes are
// routed to the cuFFT + Triton path by the Python layer.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "checks.h"
#include "cuda/logmel_delta_tile.cuh"

namespace ssa_fast {
namespace {

// The executor of logmel_delta_tile.cuh on the GPU: loops strided over the block's threads.
// (__host__ __device__ so that the __host__ __device__ tile program may call it; the host
// instantiation is never run.)
struct DeviceExec {
  template <class Fn>
  __host__ __device__ __forceinline__ void strided(int n, Fn&& fn) const {
#if defined(__CUDA_ARCH__)
    for (int i = threadIdx.x; i < n; i += blockDim.x) fn(i);
#else
    (void)n;
    (void)fn;
#endif
  }
  __host__ __device__ __forceinline__ void sync() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
  __host__ __device__ __forceinline__ void finish() const {}
};

__global__ void __launch_bounds__(logmel::kThreads)
    logmel_delta_kernel(logmel::Geometry g, const float* __restrict__ x,
                        const int64_t* __restrict__ lengths, const float* __restrict__ window,
                        const float* __restrict__ fb, const int* __restrict__ bands,
                        float* __restrict__ out) {
  extern __shared__ __align__(16) float smem[];
  logmel::tile_program(DeviceExec{}, g, blockIdx.x, x, lengths, window, fb, bands, out, smem);
}

// bands[2m], bands[2m + 1] = the non-zero bin range of filter m (on the device: no host sync).
__global__ void mel_bands_kernel(const float* __restrict__ fb, int n_mels, int n_freqs,
                                 int* __restrict__ bands) {
  const int m = blockIdx.x * blockDim.x + threadIdx.x;
  if (m < n_mels) logmel::band_range(fb + int64_t(m) * n_freqs, n_freqs, bands + 2 * m,
                                     bands + 2 * m + 1);
}

at::Tensor logmel_delta_cuda(const at::Tensor& waveform, const at::Tensor& lengths,
                             const at::Tensor& window, const at::Tensor& mel_fb,
                             int64_t hop_length, bool center, double amin) {
  TORCH_CHECK(waveform.is_cuda(), "waveform must be a CUDA tensor, got ", waveform.device());
  TORCH_CHECK(waveform.scalar_type() == at::kFloat,
              "the CUDA logmel_delta kernel computes float32, got ", waveform.scalar_type());
  check_logmel_args(waveform, lengths, window, mel_fb);
  TORCH_CHECK(window.device() == waveform.device() && mel_fb.device() == waveform.device(),
              "window and mel_fb must be on the waveform's device ", waveform.device());
  TORCH_CHECK(hop_length > 0 && hop_length <= std::numeric_limits<int>::max(),
              "hop_length must be a positive int32, got ", hop_length);
  TORCH_CHECK(amin > 0, "amin must be positive, got ", amin);
  const int64_t B = waveform.size(0), N = waveform.size(1), n_fft = window.size(0);
  TORCH_CHECK(logmel::fft_size_supported(n_fft), "the CUDA logmel_delta kernel needs n_fft a "
              "power of two in [", logmel::kMinFft, ", ", logmel::kMaxFft, "], got ", n_fft);
  TORCH_CHECK(lengths.size(0) == B, "lengths must have ", B, " entries, got ", lengths.size(0));
  TORCH_CHECK(mel_fb.size(1) == n_fft / 2 + 1, "mel_fb must have n_fft // 2 + 1 = ",
              n_fft / 2 + 1, " columns, got ", mel_fb.size(1));
  const int64_t T = num_frames(N, n_fft, hop_length, center);
  TORCH_CHECK(T >= 1, "waveform of ", N, " samples is shorter than n_fft = ", n_fft);
  TORCH_CHECK(T <= std::numeric_limits<int>::max(), "too many frames: ", T);

  const c10::cuda::CUDAGuard guard(waveform.device());
  const auto x = waveform.contiguous();
  const auto win = window.contiguous();
  const auto fb = mel_fb.contiguous();
  // Lengths may come from the host (the Python wrapper builds them there): one small copy.
  const auto lens = lengths.to(waveform.device(), at::kLong).contiguous();
  const int64_t M = fb.size(0);
  auto out = at::empty({B, 3, T, M}, waveform.options());
  if (B == 0 || M == 0) return out;

  int smem_optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                        waveform.get_device()));
  const int64_t smem_limit = smem_optin;
  const logmel::Geometry g =
      logmel::plan(static_cast<int>(n_fft), static_cast<int>(M), static_cast<int>(hop_length),
                   center, N, static_cast<float>(amin), smem_limit);
  const int64_t smem_bytes = int64_t(sizeof(float)) * logmel::smem_layout(g).floats;
  TORCH_CHECK(smem_bytes <= smem_limit, "logmel_delta needs ", smem_bytes,
              " bytes of shared memory per block, the device allows ", smem_limit);
  const int64_t blocks = B * g.tiles_per_item;
  TORCH_CHECK(blocks <= std::numeric_limits<int>::max(), "batch too large: ", blocks, " blocks");

  auto bands = at::empty({2 * M}, waveform.options().dtype(at::kInt));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  mel_bands_kernel<<<static_cast<unsigned>((M + 127) / 128), 128, 0, stream>>>(
      fb.data_ptr<float>(), static_cast<int>(M), g.n_freqs, bands.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  C10_CUDA_CHECK(cudaFuncSetAttribute(logmel_delta_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem_bytes)));
  logmel_delta_kernel<<<static_cast<unsigned>(blocks), logmel::kThreads,
                        static_cast<size_t>(smem_bytes), stream>>>(
      g, x.data_ptr<float>(), lens.data_ptr<int64_t>(), win.data_ptr<float>(),
      fb.data_ptr<float>(), bands.data_ptr<int>(), out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ssa_fast, CUDA, m) { m.impl("logmel_delta", &logmel_delta_cuda); }

}  // namespace ssa_fast
