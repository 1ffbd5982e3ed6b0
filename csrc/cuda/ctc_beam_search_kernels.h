// Launcher of the CUDA CTC prefix beam search (csrc/cuda/ctc_beam_search_kernel.cu). No torch headers, so
// the .cu compiles in seconds; checks, allocation and streams live in ctc_beam_search_cuda.cpp.
//   B batch, T frames, C classes (blank included), K beam width, N nbest, S trie nodes, E trie edges,
//   M LM n-grams, O lm_order.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "../ctc_lm.h"

namespace crnn_fast {

// The CUDA kernel keeps a beam slot per thread in a few places: K <= this.
constexpr int64_t kCtcBeamCudaMaxBeam = 256;
constexpr int kCtcBeamCudaMaxLMOrder = 32;

struct CtcBeamSearchParams {
  const void* log_probs;   // (B, T, C) contiguous; float32 when !is_double else float64
  bool is_double;
  const int64_t* lengths;  // (B,)
  int64_t B, T, C, blank, beam_width, nbest;
  bool use_top_k;  int64_t top_k;            // top_k < C - 1
  bool use_threshold;  double beam_threshold;
  bool use_skip;  double skip_floor;         // log(blank_skip_threshold)
  bool use_token_floor;  double token_floor;  // token_min_logp (> -inf)
  // lexicon trie (use_lexicon): crnn_fast/formats/lexicon.py layout
  bool use_lexicon;
  const int64_t* trie_offsets;   // (S + 1,)
  const int64_t* trie_labels;    // (E,)
  const int64_t* trie_children;  // (E,)
  const bool* trie_is_word;      // (S,)
  int64_t separator;             // -1: none
  // LM (use_lm: an LM is given and lm_weight != 0): crnn_fast/formats/lm.py layout
  bool use_lm;
  ctc::LMView lm;                // the n-gram table (keys, values, buckets, Bloom filter), device pointers
  double lm_max_unigram;         // largest unigram log10 prob (the empty n-gram's third column), 0 if none
  const int64_t* lm_token_map;   // (C,)
  int lm_order;
  int64_t lm_bos;
  double lm_weight, bonus;
  // outputs
  int64_t* tokens;       // (B, N, T)
  int64_t* out_lengths;  // (B, N)
  int64_t* frames;       // (B, N, T)
  float* confidences;    // (B, N, T)
  double* scores;        // (B, N)
  double* acoustic;      // (B, N)
  double* lm_scores;     // (B, N)
  int32_t* status;       // (B,) out: 0 ok, 1 NaN/+inf in a valid row, 2 lengths[b] outside [0, T], 3 a valid
                         // row -inf for every class (its frame in bad_frames[b]), 4 a hypothesis with no
                         // alignment of log-probability > -inf
  int32_t* bad_frames;   // (B,) out, where status is 3
  // scratch, sizes from ctc_beam_search_scratch_sizes
  int32_t* nodes;        // (B, node_cap, 2): parent, token of every prefix created
  int64_t* lm_ctx;       // (B, 2, K, max(O - 1, 1))
  double* lm_acc;        // (B, 2, K, O + 1): backoff sums A[k]; slot O holds the context's upper bound
  int32_t* lm_meta;      // (B, 2, K, 2): number of context words, longest stored context
  double* align_alpha;   // (B, 2, 2T + 1): two frames of the output alignments' alpha (csrc/ctc_align.h)
  uint8_t* align_steps;  // (B, T, ceil((2T + 1) / 4)): their packed 2-bit steps
};

// Elements of each scratch tensor (nodes in int32, lm_ctx in int64, lm_acc in double, lm_meta in int32,
// align_alpha in double, align_steps in uint8).
void ctc_beam_search_scratch_sizes(int64_t B, int64_t T, int64_t K, int lm_order, bool use_lm, int64_t* nodes,
                                   int64_t* lm_ctx, int64_t* lm_acc, int64_t* lm_meta, int64_t* align_alpha,
                                   int64_t* align_steps);

cudaError_t launch_ctc_beam_search(const CtcBeamSearchParams& p, cudaStream_t stream);

}  // namespace crnn_fast
