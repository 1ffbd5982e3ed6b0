// Argument checks of crnn_fast::ctc_beam_search shared by its CPU and CUDA implementations, so both reject the
// same inputs with the same messages (each names the argument). Contents checks take host pointers: the CUDA
// glue calls them on host copies.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>

#include "checks.h"

namespace crnn_fast {
namespace beam_checks {

// The documented bounds of the options (crnn_fast/_beam_checks.py MAX_BEAM_WIDTH, MAX_NBEST, MAX_LM_WEIGHT,
// MAX_INSERTION_BONUS; crnn_fast/formats/lm.py MAX_ABS_LOG10_BACKOFF): they keep the work bounded and every score
// finite (see there).
constexpr int64_t kMaxBeamWidth = 4096;
constexpr int64_t kMaxNbest = kMaxBeamWidth;
constexpr double kMaxLMWeight = 1e4;
constexpr double kMaxInsertionBonus = 1e4;
constexpr double kMaxAbsLog10Backoff = 1e4;

inline void check_optional_1d(const std::optional<at::Tensor>& x, const char* name, at::ScalarType dtype,
                              const at::Device& device) {
  if (!x.has_value()) return;
  TORCH_CHECK(x->dim() == 1, name, " must have 1 dimension, got ", x->dim());
  TORCH_CHECK(x->scalar_type() == dtype, name, " must be ", dtype, ", got ", x->scalar_type());
  TORCH_CHECK(x->device() == device, name, " must be on ", device, ", got ", x->device());
}

// log_probs (B, T, C), lengths (B,) and the scalar options.
inline void check_inputs_and_options(const at::Tensor& log_probs, const at::Tensor& lengths, int64_t blank,
                                     int64_t beam_width, int64_t nbest, std::optional<int64_t> top_k,
                                     std::optional<double> beam_threshold,
                                     std::optional<double> blank_skip_threshold,
                                     std::optional<double> token_min_logp, double lm_weight,
                                     double insertion_bonus) {
  check_ctc_inputs(log_probs, lengths, blank);
  TORCH_CHECK(beam_width >= 1 && beam_width <= kMaxBeamWidth, "beam_width must be in [1, ", kMaxBeamWidth, "], got ",
              beam_width);
  TORCH_CHECK(nbest >= 1 && nbest <= kMaxNbest, "nbest must be in [1, ", kMaxNbest, "], got ", nbest);
  TORCH_CHECK(!top_k.has_value() || *top_k >= 1, "top_k must be >= 1, got ", top_k.value_or(0));
  TORCH_CHECK(!beam_threshold.has_value() || (*beam_threshold >= 0 && !std::isnan(*beam_threshold)),
              "beam_threshold must be >= 0, got ", beam_threshold.value_or(0));
  TORCH_CHECK(!blank_skip_threshold.has_value() || (*blank_skip_threshold > 0 && *blank_skip_threshold <= 1),
              "blank_skip_threshold must be in (0, 1], got ", blank_skip_threshold.value_or(0));
  TORCH_CHECK(!token_min_logp.has_value() || !std::isnan(*token_min_logp), "token_min_logp must not be NaN");
  TORCH_CHECK(lm_weight >= 0 && lm_weight <= kMaxLMWeight, "lm_weight must be in [0, ", kMaxLMWeight, "], got ",
              lm_weight);
  TORCH_CHECK(std::fabs(insertion_bonus) <= kMaxInsertionBonus, "insertion_bonus must be in [-", kMaxInsertionBonus,
              ", ", kMaxInsertionBonus, "], got ", insertion_bonus);
}

struct TrieSizes {
  int64_t nodes, edges;  // S, E
};

// The four trie tensors: all or none, 1-D, dtypes, device, consistent sizes. Returns S and E.
inline TrieSizes check_trie_tensors(const std::optional<at::Tensor>& offsets, const std::optional<at::Tensor>& labels,
                                    const std::optional<at::Tensor>& children,
                                    const std::optional<at::Tensor>& is_word, const at::Device& device) {
  TORCH_CHECK(offsets.has_value() && labels.has_value() && children.has_value() && is_word.has_value(),
              "lexicon: trie_offsets, trie_labels, trie_children and trie_is_word must be given together");
  check_optional_1d(offsets, "trie_offsets", at::kLong, device);
  check_optional_1d(labels, "trie_labels", at::kLong, device);
  check_optional_1d(children, "trie_children", at::kLong, device);
  check_optional_1d(is_word, "trie_is_word", at::kBool, device);
  const int64_t S = is_word->size(0), E = labels->size(0);
  TORCH_CHECK(S >= 1 && offsets->size(0) == S + 1,
              "trie_offsets must have one more entry than trie_is_word (S + 1 with S >= 1 nodes), got ",
              offsets->size(0), " and ", S);
  TORCH_CHECK(children->size(0) == E, "trie_children must have as many entries as trie_labels (", E, "), got ",
              children->size(0));
  TORCH_CHECK(S < (1LL << 31), "lexicon trie too large");
  return {S, E};
}

// Trie contents (host pointers): offsets, ascending labels that are classes other than blank and the separator,
// children inside the node range.
inline void check_trie_contents(const int64_t* off, const int64_t* lab, const int64_t* chi, TrieSizes n, int64_t C,
                                int64_t blank, std::optional<int64_t> word_separator) {
  const int64_t S = n.nodes, E = n.edges;
  TORCH_CHECK(off[0] == 0 && off[S] == E, "trie_offsets must start at 0 and end at ", E);
  for (int64_t s = 0; s < S; ++s) {
    TORCH_CHECK(off[s] <= off[s + 1], "trie_offsets must be non-decreasing (node ", s, ")");
    for (int64_t k = off[s]; k < off[s + 1]; ++k) {
      TORCH_CHECK(lab[k] >= 0 && lab[k] < C && lab[k] != blank, "trie_labels must be class ids in [0, ", C,
                  ") other than blank, got ", lab[k]);
      TORCH_CHECK(k == off[s] || lab[k - 1] < lab[k], "trie_labels must be strictly ascending within a node");
      TORCH_CHECK(chi[k] > 0 && chi[k] < S, "trie_children must be node ids in [1, ", S, "), got ", chi[k]);
    }
  }
  if (word_separator.has_value()) {
    for (int64_t k = 0; k < E; ++k) {
      TORCH_CHECK(lab[k] != *word_separator, "lexicon words must not contain the word_separator ", *word_separator);
    }
  }
}

inline void check_word_separator(int64_t s, int64_t C, int64_t blank) {
  TORCH_CHECK(s >= 0 && s < C && s != blank, "word_separator must be a class id in [0, ", C,
              ") other than blank, got ", s);
}

struct LMSizes {
  int64_t rows, buckets, filter_words;  // M, nb (a power of two), nw (a power of two)
  int bits;                             // log2(nb)
};

// The five LM tensors: all or none, dtypes, device, consistent sizes, lm_order and lm_bos ranges.
inline LMSizes check_lm_tensors(const std::optional<at::Tensor>& keys, const std::optional<at::Tensor>& values,
                                const std::optional<at::Tensor>& buckets, const std::optional<at::Tensor>& filter,
                                const std::optional<at::Tensor>& token_map, int64_t lm_order, int64_t lm_bos,
                                int64_t max_lm_order, int64_t C, const at::Device& device) {
  TORCH_CHECK(keys.has_value() && values.has_value() && buckets.has_value() && filter.has_value() &&
                  token_map.has_value(),
              "lm: lm_keys, lm_values, lm_buckets, lm_filter and lm_token_map must be given together");
  check_optional_1d(keys, "lm_keys", at::kLong, device);
  check_optional_1d(buckets, "lm_buckets", at::kLong, device);
  check_optional_1d(filter, "lm_filter", at::kLong, device);
  check_optional_1d(token_map, "lm_token_map", at::kLong, device);
  TORCH_CHECK(values->dim() == 2 && values->size(1) == 3, "lm_values must have shape (M, 3), got ", values->sizes());
  TORCH_CHECK(values->scalar_type() == at::kDouble, "lm_values must be ", at::kDouble, ", got ",
              values->scalar_type());
  TORCH_CHECK(values->device() == device, "lm_values must be on ", device, ", got ", values->device());
  TORCH_CHECK(lm_order >= 1 && lm_order <= max_lm_order, "lm_order must be in [1, ", max_lm_order, "], got ",
              lm_order);
  TORCH_CHECK(lm_bos >= -1, "lm_bos must be an LM word id or -1, got ", lm_bos);
  const int64_t nw = filter->size(0);
  TORCH_CHECK(nw >= 1 && (nw & (nw - 1)) == 0 && nw <= (int64_t{1} << 57),
              "lm_filter must have a power-of-two number of words, got ", nw);
  const int64_t M = keys->size(0);
  TORCH_CHECK(values->size(0) == M, "lm_values must have one row per key (", M, "), got ", values->size(0));
  TORCH_CHECK(token_map->size(0) == C, "lm_token_map must have C=", C, " entries, got ", token_map->size(0));
  const int64_t nb = buckets->size(0) - 1;
  TORCH_CHECK(nb >= 2 && (nb & (nb - 1)) == 0, "lm_buckets must have 2^bits + 1 entries (bits >= 1), got ", nb + 1);
  int bits = 0;
  while ((int64_t{1} << bits) < nb) ++bits;
  return {M, nb, nw, bits};
}

// LM contents (host pointers). The decoder's upper bounds rely on these: probabilities <= 1 (and the
// largest-extension column really the largest: a wrong one can only prune differently, never crash).
inline void check_lm_contents(const int64_t* bk, const double* vals, const int64_t* tm, LMSizes n, int64_t C,
                              int64_t blank) {
  TORCH_CHECK(bk[0] == 0 && bk[n.buckets] == n.rows, "lm_buckets must start at 0 and end at ", n.rows);
  for (int64_t i = 0; i < n.buckets; ++i) TORCH_CHECK(bk[i] <= bk[i + 1], "lm_buckets must be non-decreasing");
  for (int64_t i = 0; i < n.rows; ++i) {
    TORCH_CHECK(!std::isnan(vals[3 * i]) && vals[3 * i] <= 0, "lm_values: log10 probabilities must be <= 0, got ",
                vals[3 * i]);
    TORCH_CHECK(std::fabs(vals[3 * i + 1]) <= kMaxAbsLog10Backoff, "lm_values: log10 backoffs must be in [-",
                kMaxAbsLog10Backoff, ", ", kMaxAbsLog10Backoff, "], got ", vals[3 * i + 1]);
    TORCH_CHECK(!std::isnan(vals[3 * i + 2]) && vals[3 * i + 2] <= 0,
                "lm_values: largest next log10 probabilities must be <= 0, got ", vals[3 * i + 2]);
  }
  for (int64_t c = 0; c < C; ++c) {
    TORCH_CHECK(c == blank || tm[c] >= 0, "lm_token_map[", c, "] must be an LM word id >= 0, got ", tm[c]);
  }
}

}  // namespace beam_checks
}  // namespace crnn_fast
