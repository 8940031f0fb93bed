// Every op schema of the library, in one place. Implementations register per device in
// csrc/cpu/*.cpp (and csrc/cuda/*.cu where hand-written CUDA is measurably faster than Triton).
#include <torch/library.h>
#include <pybind11/pybind11.h>

TORCH_LIBRARY(ssa_fast, m) {
  // waveform (B, N) float, lengths (B,) int64 samples per item, window (n_fft,) already centred and
  // zero-padded to n_fft, mel_fb (n_mels, n_fft // 2 + 1). Returns (B, 3, T, n_mels) with
  // T = frames of N; frames at or past an item's own frame count are zero.
  m.def(
      "logmel_delta(Tensor waveform, Tensor lengths, Tensor window, Tensor mel_fb, "
      "int hop_length, bool center, float amin) -> Tensor");
}

// Importing ssa_fast._C runs the static registrations above; the module itself exposes nothing.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ssa_fast native ops (registered under torch.ops.ssa_fast)";
}
