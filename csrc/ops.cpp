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
  // CTC prefix beam search (crnn_fast.reference.ctc.ctc_beam_search_ref's semantics) with optional lexicon
  // trie and character n-gram LM; N = nbest.
  //   log_probs: (B, T, C) float log-probabilities; lengths: (B,) int64.
  //   trie_*: the lexicon as a flat trie (crnn_fast/formats/lexicon.py), all four or none.
  //   lm_*: the LM as flat tensors (crnn_fast/formats/lm.py, LMTensors), all five or none.
  //   tokens, token_frames: (B, N, T) int64 padded with -1; token_confidences: (B, N, T) float32 padded with 0;
  //   token_lengths: (B, N) int64, -1 where an item has fewer than N hypotheses;
  //   scores, acoustic_scores, lm_scores: (B, N) float64, -inf where there is no hypothesis.
  m.def(
      "ctc_beam_search(Tensor log_probs, Tensor lengths, int blank, int beam_width, int nbest, int? top_k, "
      "float? beam_threshold, float? blank_skip_threshold, float? token_min_logp, Tensor? trie_offsets, "
      "Tensor? trie_labels, Tensor? trie_children, Tensor? trie_is_word, int? word_separator, Tensor? lm_keys, "
      "Tensor? lm_values, Tensor? lm_buckets, Tensor? lm_filter, Tensor? lm_token_map, int lm_order, int lm_bos, "
      "float lm_weight, float insertion_bonus) "
      "-> (Tensor tokens, Tensor token_lengths, Tensor token_frames, Tensor token_confidences, Tensor scores, "
      "Tensor acoustic_scores, Tensor lm_scores)");
  // Persistent LSTM recurrence of one layer, every direction in one launch; inference only (CUDA,
  // csrc/cuda/lstm_recurrence_kernel.cu; python face crnn_fast/ops/lstm_cuda.py).
  //   x_proj: (B, T, D*4H) float16/bfloat16 = x @ W_ih^T + b_ih + b_hh per direction, gates i, f, g, o;
  //   w_hh: (D, 4H, H), D = 1 or 2, H <= 256; h0, c0: (D, B, H); lengths: (B,) int64 or None (all T);
  //   algo: 0 auto, 1 thread-block cluster (sm_90+), 2 cooperative launch (sm_80+).
  //   out: (B, T, D*H), zero where t >= lengths[b]; h_n, c_n: (D, B, H) at each sequence's last valid step.
  m.def(
      "lstm_recurrence(Tensor x_proj, Tensor w_hh, Tensor h0, Tensor c0, Tensor? lengths=None, int algo=0) -> "
      "(Tensor out, Tensor h_n, Tensor c_n)");
}
