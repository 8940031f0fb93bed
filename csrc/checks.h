// Shared argument checks for the native kernels. The Python layer validates user input with clear
// errors first; these are the backstop for direct torch.ops.ssa_fast.* calls.
#pragma once
#include <ATen/ATen.h>

namespace ssa_fast {

inline void check_cpu_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ", t.sizes());
}

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* name_a,
                             const char* name_b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), name_a, " and ", name_b,
              " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

// The tensor arguments of logmel_delta, shared by the CPU and CUDA kernels (device and dtype
// support are each kernel's own check).
inline void check_logmel_args(const at::Tensor& waveform, const at::Tensor& lengths,
                              const at::Tensor& window, const at::Tensor& mel_fb) {
  check_dim(waveform, 2, "waveform");
  check_dim(lengths, 1, "lengths");
  check_dim(window, 1, "window");
  check_dim(mel_fb, 2, "mel_fb");
  check_same_dtype(waveform, window, "waveform", "window");
  check_same_dtype(waveform, mel_fb, "waveform", "mel_fb");
}

// Number of frames for `n` samples (the same formula as torch.stft / librosa.stft).
// Centred, the signal is padded by n_fft / 2 on both sides: an odd n_fft has one sample less
// of room than an even one.
inline int64_t num_frames(int64_t n, int64_t n_fft, int64_t hop, bool center) {
  const int64_t padded = center ? n + 2 * (n_fft / 2) : n;
  return padded >= n_fft ? 1 + (padded - n_fft) / hop : 0;
}

}  // namespace ssa_fast
