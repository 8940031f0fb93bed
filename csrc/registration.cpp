// Every op schema of the extension, in one place. Implementations register per device in
// csrc/cpu/*.cpp (and csrc/cuda/*.cu where hand-written CUDA is measurably faster than Triton).
// The Triton launchers are ops of the same namespace too (ssa_fast::*_triton), registered in
// Python by torch.library.custom_op in ssa_fast/kernels/<op>/triton.py, which infers their
// schemas from the signatures: they must exist without the extension, which is optional.
#include <torch/library.h>
#include <pybind11/pybind11.h>

TORCH_LIBRARY(ssa_fast, m) {
  // Dtypes: the native kernels take float32 or float64 tensors and return new contiguous tensors
  // of their first input's dtype. bf16 / fp16 never reach them: the autograd boundaries in
  // ssa_fast/kernels/<op>/function.py state each op's dtype rule and convert first.
  // waveform (B, N) float, lengths (B,) int64 samples per item, window (n_fft,) already centred and
  // zero-padded to n_fft, mel_fb (n_mels, n_fft // 2 + 1). Returns (B, 3, T, n_mels) with
  // T = frames of N; frames at or past an item's own frame count are zero.
  m.def(
      "logmel_delta(Tensor waveform, Tensor lengths, Tensor window, Tensor mel_fb, "
      "int hop_length, bool center, float amin) -> Tensor");
  // The same features by the second CUDA kernel (csrc/cuda/logmel_delta_regfft.cu: the FFT in
  // registers), CUDA only and opt-in until a GPU session has validated it (SSA_FAST_LOGMEL_REGFFT).
  m.def(
      "logmel_delta_regfft(Tensor waveform, Tensor lengths, Tensor window, Tensor mel_fb, "
      "int hop_length, bool center, float amin) -> Tensor");

  // Self Speaker Attention core (design.md section 5, fast form): single-query attention over the
  // 2T rows of [h_em ; h_sp] with the query vectors qk_em, qk_sp (both (B, d)).
  // Returns p_em, p_sp (B, d), alpha (B, 2T) (self rows first) and lse (B,).
  m.def(
      "ssa_core_fwd(Tensor h_em, Tensor h_sp, Tensor qk_em, Tensor qk_sp, float scale) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
  // Gradients of the core: dh_em, dh_sp (B, T, d), dqk_em, dqk_sp (B, d).
  m.def(
      "ssa_core_bwd(Tensor h_em, Tensor h_sp, Tensor qk_em, Tensor qk_sp, Tensor alpha, "
      "Tensor p_em, Tensor p_sp, Tensor dp_em, Tensor dp_sp, Tensor dalpha, float scale) -> "
      "(Tensor, Tensor, Tensor, Tensor)");

  // L1 projection of a classifier's weight (design.md section 6), in place: every row of
  // weight (K, n) is rescaled to L1 norm N / (K * sum_i ||x_i||_1) for x (N, n).
  m.def("l1_project_(Tensor(a!) weight, Tensor x) -> ()");
}

#ifndef SSA_FAST_SOURCE_DIGEST
#define SSA_FAST_SOURCE_DIGEST ""
#endif

// Importing ssa_fast._C runs the static registrations above; the module itself exposes only the
// digest of the sources it was built from (CMakeLists.txt; read by ssa_fast/_code.py).
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ssa_fast native ops (registered under torch.ops.ssa_fast)";
  m.attr("source_digest") = SSA_FAST_SOURCE_DIGEST;
}
