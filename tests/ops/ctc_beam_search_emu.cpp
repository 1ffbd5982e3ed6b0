// CPU emulation of the CUDA beam search kernel (csrc/cuda/ctc_beam_search_kernel.cu, compiled with
// CRNN_FAST_CUDA_EMU): tests/ops/test_ctc_beam_search_cuda.py builds this with g++ and calls it through
// ctypes, so the kernel's logic is checked against the CPU op on machines without a GPU.
#define CRNN_FAST_CUDA_EMU 1
#include "../../csrc/cuda/ctc_beam_search_kernel.cu"

extern "C" int emu_ctc_beam_search(
    const void* log_probs, int is_double, const int64_t* lengths, int64_t B, int64_t T, int64_t C, int64_t blank,
    int64_t beam_width, int64_t nbest, int use_top_k, int64_t top_k, int use_threshold, double beam_threshold,
    int use_skip, double skip_floor, int use_token_floor, double token_floor, int use_lexicon, const int64_t* trie_offsets, const int64_t* trie_labels,
    const int64_t* trie_children, const bool* trie_is_word, int64_t separator, int use_lm, const uint64_t* lm_keys,
    const double* lm_values, double lm_max_unigram, const int64_t* lm_buckets, int lm_shift, const uint64_t* lm_filter, int64_t lm_filter_words, const int64_t* lm_token_map, int lm_order,
    int64_t lm_bos, double lm_weight, double bonus, int64_t* tokens, int64_t* out_lengths, int64_t* frames,
    float* confidences, double* scores, double* acoustic, double* lm_scores, int32_t* status, int32_t* bad_frames) {
  using namespace crnn_fast;
  CtcBeamSearchParams p{};
  p.log_probs = log_probs; p.is_double = is_double; p.lengths = lengths;
  p.B = B; p.T = T; p.C = C; p.blank = blank; p.beam_width = beam_width; p.nbest = nbest;
  p.use_top_k = use_top_k; p.top_k = top_k; p.use_threshold = use_threshold; p.beam_threshold = beam_threshold;
  p.use_skip = use_skip; p.skip_floor = skip_floor;
  p.use_token_floor = use_token_floor; p.token_floor = token_floor;
  p.use_lexicon = use_lexicon; p.trie_offsets = trie_offsets; p.trie_labels = trie_labels;
  p.trie_children = trie_children; p.trie_is_word = trie_is_word; p.separator = separator;
  p.use_lm = use_lm; p.lm.keys = lm_keys; p.lm.values = lm_values; p.lm_max_unigram = lm_max_unigram; p.lm.buckets = lm_buckets; p.lm.shift = lm_shift;
  p.lm.filter = lm_filter; p.lm.filter_mask = static_cast<uint64_t>(lm_filter_words) * 64 - 1;
  p.lm_token_map = lm_token_map; p.lm_order = use_lm ? lm_order : 1; p.lm_bos = lm_bos;
  p.lm_weight = lm_weight; p.bonus = bonus;
  p.tokens = tokens; p.out_lengths = out_lengths; p.frames = frames; p.confidences = confidences;
  p.scores = scores; p.acoustic = acoustic; p.lm_scores = lm_scores; p.status = status; p.bad_frames = bad_frames;
  int64_t n_nodes, n_ctx, n_acc, n_meta, n_alpha, n_steps;
  ctc_beam_search_scratch_sizes(B, T, beam_width, p.lm_order, p.use_lm, &n_nodes, &n_ctx, &n_acc, &n_meta, &n_alpha,
                                &n_steps);
  std::vector<int32_t> nodes(n_nodes), meta(n_meta);
  std::vector<int64_t> ctx(n_ctx);
  std::vector<double> acc(n_acc), alpha(n_alpha);
  std::vector<uint8_t> steps(n_steps);
  p.nodes = nodes.data(); p.lm_ctx = ctx.data(); p.lm_acc = acc.data(); p.lm_meta = meta.data();
  p.align_alpha = alpha.data(); p.align_steps = steps.data();
  return static_cast<int>(launch_ctc_beam_search(p, nullptr));
}
