// The second CUDA log-Mel kernel (opt-in, op logmel_delta_regfft; docs/design.md section 10.1):
// the same features as logmel_delta.cu in one launch after the bands kernel, with the FFT in
// registers (one team of 8 / 16 / 32 lanes per frame, warp barriers only), the window overlap of a
// group's frames loaded once into shared memory and the deltas slid in registers. The block
// program is logmel_delta_regfft_tile.cuh, shared with the CPU emulation the tests run. It stays
// opt-in (SSA_FAST_LOGMEL_REGFFT=1 in the Python wrapper) until a GPU session has validated it.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "checks.h"
#include "cuda/logmel_delta_regfft_tile.cuh"

namespace ssa_fast {
namespace {

namespace rf = logmel::regfft;

// A team's barrier: __syncwarp over its lanes (a team never straddles a warp: P divides 32).
struct DeviceTeam {
  unsigned mask;
  __host__ __device__ __forceinline__ void sync() const {
#if defined(__CUDA_ARCH__)
    __syncwarp(mask);
#endif
  }
};

// The executor of logmel_delta_regfft_tile.cuh on the GPU (__host__ __device__ so that the tile
// program may call it; the host instantiation is never run).
struct DeviceTeamExec {
  template <class Fn>
  __host__ __device__ __forceinline__ void strided(int n, Fn&& fn) const {
#if defined(__CUDA_ARCH__)
    for (int i = threadIdx.x; i < n; i += blockDim.x) fn(i);
#else
    (void)n;
    (void)fn;
#endif
  }
  // Team t on threads [(t % (blockDim / P)) P, + P): the loop bound is the same for every lane
  // of a team, so its lanes reach each __syncwarp together.
  template <class Fn>
  __host__ __device__ __forceinline__ void teams(int n, int lanes, Fn&& fn) const {
#if defined(__CUDA_ARCH__)
    const int lane = threadIdx.x % lanes;
    const unsigned mask = lanes == 32 ? 0xffffffffu
                                      : ((1u << lanes) - 1u) << ((threadIdx.x & 31) - lane);
    const DeviceTeam team{mask};
    for (int t = threadIdx.x / lanes; t < n; t += blockDim.x / lanes) fn(team, t, lane);
#else
    (void)n;
    (void)lanes;
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

template <int N1, int N2>
__global__ void __launch_bounds__(rf::kThreads)
    logmel_delta_regfft_kernel(logmel::Geometry g, const float* __restrict__ x,
                               const int64_t* __restrict__ lengths,
                               const float* __restrict__ window, const float* __restrict__ fb,
                               const int* __restrict__ bands, float* __restrict__ out) {
  extern __shared__ __align__(16) float smem[];
  rf::tile_program<N1, N2>(DeviceTeamExec{}, g, blockIdx.x, x, lengths, window, fb, bands, out,
                           smem);
}

// regfft::deal_filters by one warp, lane l < P holding lane l's work: the same greedy choices
// (the least work, ties to the lowest lane, as one __reduce_min_sync of work * 32 + lane per
// filter), so the same dealing; ~M x 30 cycles instead of a thread's M x P steps.
__device__ void deal_filters_warp(const int* bands, int M, int P, int* deal) {
  const unsigned all = 0xffffffffu, l = threadIdx.x & 31;
  const auto pick = [&](unsigned work) {
    return __reduce_min_sync(all, l < unsigned(P) ? (work << 5) | l : all) & 31u;
  };
  unsigned work = 0;
  int count = 0;
  for (int m = M - 1; m >= 0; --m) {
    const unsigned best = pick(work);
    if (l == best) {
      work += bands[2 * m + 1] - bands[2 * m] + 1;
      ++count;
    }
  }
  int upto = count;  // inclusive prefix sum of the counts over the lanes
  for (int d = 1; d < 32; d *= 2) {
    const int v = __shfl_up_sync(all, upto, d);
    if (l >= unsigned(d)) upto += v;
  }
  int at = upto - count;
  if (l < unsigned(P)) deal[l] = at;
  if (l == unsigned(P - 1)) deal[P] = upto;
  work = 0;
  for (int m = M - 1; m >= 0; --m) {  // the same choices again, now placing each filter
    const unsigned best = pick(work);
    if (l == best) {
      work += bands[2 * m + 1] - bands[2 * m] + 1;
      deal[P + 1 + at++] = m;
    }
  }
}

// bands[2m], bands[2m + 1] = the non-zero bin range of filter m, then the dealing of the filters
// to the lanes of a frame (one block: on the device, no host sync).
__global__ void regfft_bands_kernel(const float* __restrict__ fb, int n_mels, int n_freqs,
                                    int lanes, int* __restrict__ bands) {
  for (int m = threadIdx.x; m < n_mels; m += blockDim.x)
    logmel::band_range(fb + int64_t(m) * n_freqs, n_freqs, bands + 2 * m, bands + 2 * m + 1);
  __syncthreads();
  if (threadIdx.x < 32) deal_filters_warp(bands, n_mels, lanes, bands + 2 * n_mels);
}

template <int N1, int N2>
void launch(const logmel::Geometry& g, int64_t blocks, int64_t smem_bytes, cudaStream_t stream,
            const float* x, const int64_t* lens, const float* win, const float* fb,
            const int* bands, float* out) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(logmel_delta_regfft_kernel<N1, N2>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem_bytes)));
  logmel_delta_regfft_kernel<N1, N2><<<static_cast<unsigned>(blocks), rf::kThreads,
                                       static_cast<size_t>(smem_bytes), stream>>>(
      g, x, lens, win, fb, bands, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor logmel_delta_regfft_cuda(const at::Tensor& waveform, const at::Tensor& lengths,
                                    const at::Tensor& window, const at::Tensor& mel_fb,
                                    int64_t hop_length, bool center, double amin) {
  TORCH_CHECK(waveform.is_cuda(), "waveform must be a CUDA tensor, got ", waveform.device());
  TORCH_CHECK(waveform.scalar_type() == at::kFloat,
              "the CUDA logmel_delta_regfft kernel computes float32, got ",
              waveform.scalar_type());
  check_logmel_args(waveform, lengths, window, mel_fb);
  TORCH_CHECK(window.device() == waveform.device() && mel_fb.device() == waveform.device(),
              "window and mel_fb must be on the waveform's device ", waveform.device());
  TORCH_CHECK(hop_length > 0 && hop_length <= std::numeric_limits<int>::max(),
              "hop_length must be a positive int32, got ", hop_length);
  TORCH_CHECK(amin > 0, "amin must be positive, got ", amin);
  const int64_t B = waveform.size(0), N = waveform.size(1), n_fft = window.size(0);
  TORCH_CHECK(logmel::fft_size_supported(n_fft), "the CUDA logmel_delta_regfft kernel needs "
              "n_fft a power of two in [", logmel::kMinFft, ", ", logmel::kMaxFft, "], got ",
              n_fft);
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
  const auto lens = lengths.to(waveform.device(), at::kLong).contiguous();
  const int64_t M = fb.size(0);
  auto out = at::empty({B, 3, T, M}, waveform.options());
  if (B == 0 || M == 0) return out;

  int smem_optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                        waveform.get_device()));
  const int64_t smem_limit = smem_optin;
  const logmel::Geometry g =
      rf::plan(static_cast<int>(n_fft), static_cast<int>(M), static_cast<int>(hop_length),
               center, N, static_cast<float>(amin), smem_limit);
  const int64_t smem_bytes = int64_t(sizeof(float)) * rf::layout(g).floats;
  TORCH_CHECK(smem_bytes <= smem_limit, "logmel_delta_regfft needs ", smem_bytes,
              " bytes of shared memory per block, the device allows ", smem_limit);
  const int64_t blocks = B * g.tiles_per_item;
  TORCH_CHECK(blocks <= std::numeric_limits<int>::max(), "batch too large: ", blocks, " blocks");

  auto bands = at::empty({rf::bands_size(static_cast<int>(M), g.n_fft)},
                         waveform.options().dtype(at::kInt));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  regfft_bands_kernel<<<1, 256, 0, stream>>>(fb.data_ptr<float>(), static_cast<int>(M),
                                              g.n_freqs, rf::split_for(g.n_fft).lanes,
                                              bands.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const float *xp = x.data_ptr<float>(), *wp = win.data_ptr<float>(), *fp = fb.data_ptr<float>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  const int* bp = bands.data_ptr<int>();
  float* op = out.data_ptr<float>();
  switch (n_fft) {  // the factorisations of n_fft / 2 in regfft::split_for
    case 256: launch<8, 16>(g, blocks, smem_bytes, stream, xp, lp, wp, fp, bp, op); break;
    case 512: launch<16, 16>(g, blocks, smem_bytes, stream, xp, lp, wp, fp, bp, op); break;
    case 1024: launch<16, 32>(g, blocks, smem_bytes, stream, xp, lp, wp, fp, bp, op); break;
    default: launch<32, 32>(g, blocks, smem_bytes, stream, xp, lp, wp, fp, bp, op); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ssa_fast, CUDA, m) {
  m.impl("logmel_delta_regfft", &logmel_delta_regfft_cuda);
}

}  // namespace ssa_fast
