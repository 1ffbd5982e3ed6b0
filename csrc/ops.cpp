// Schemas of every crnn_fast op, and the empty Python module whose import runs the registrations.
// Implementations live per device in csrc/cpu/ and csrc/cuda/ (TORCH_LIBRARY_IMPL).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import crnn_fast._C` loads this shared object; loading it runs the static TORCH_LIBRARY initialisers.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(crnn_fast, m) {
  // Best-path (greedy) CTC decoding: argmax per frame, merge repeats, drop blanks.
  //   log_probs: (B, T, C) float; lengths: (B,) int64.
  //   tokens, token_frames: (B, T) int64 padded with -1; token_lengths: (B,) int64;
  //   token_logprobs: (B, T) peak log-prob of each emitted token, padded with 0; path_logprob: (B,).
  m.def(
      "ctc_greedy(Tensor log_probs, Tensor lengths, int blank) -> "
      "(Tensor tokens, Tensor token_lengths, Tensor token_frames, Tensor token_logprobs, Tensor path_logprob)");
}
