// crnn_fast::ctc_beam_search (its schema: csrc/ops.cpp) for the CPU and the CUDA op alike: the op's signature
// (ctc_beam_search_op), its arguments read once (every check of ctc_beam_search_checks.h that needs no tensor
// contents, the scalar options in the form the searches use, the tensors made contiguous) and its outputs. What
// stays with each device is the search, and where the lexicon's and the LM's contents are read to be checked:
// the CPU op reads them in place, the CUDA op a host copy, once per set of tensors.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include "ctc_beam_search_checks.h"
#include "ctc_lm.h"

namespace crnn_fast {
namespace beam_args {

using BeamResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The scalar options as both searches read them. Their Params structs use the same field names (set_options).
struct Options {
  int64_t B = 0, T = 0, C = 0, blank = 0, beam_width = 1, nbest = 1;
  bool use_top_k = false;  // top_k < C - 1: fewer than every non-blank class
  int64_t top_k = 0;
  bool use_threshold = false;  // a finite beam_threshold
  double beam_threshold = 0;
  bool use_skip = false;
  double skip_floor = 0;  // log(blank_skip_threshold)
  bool use_token_floor = false;  // a token_min_logp above -inf
  double token_floor = 0;
  int64_t separator = -1;  // the word separator of a lexicon, -1: none
  bool use_lm = false;     // an LM is given and lm_weight != 0
  int lm_order = 1;        // the LM's order when one is given, else 1
  int64_t lm_bos = -1;
  double lm_weight = 0, bonus = 0;
};

template <class Params>
void set_options(const Options& o, Params* p) {
  p->B = o.B;
  p->T = o.T;
  p->C = o.C;
  p->blank = o.blank;
  p->beam_width = o.beam_width;
  p->nbest = o.nbest;
  p->use_top_k = o.use_top_k;
  p->top_k = o.top_k;
  p->use_threshold = o.use_threshold;
  p->beam_threshold = o.beam_threshold;
  p->use_skip = o.use_skip;
  p->skip_floor = o.skip_floor;
  p->use_token_floor = o.use_token_floor;
  p->token_floor = o.token_floor;
  p->separator = o.separator;
  p->use_lm = o.use_lm;
  p->lm_order = o.lm_order;
  p->lm_bos = o.lm_bos;
  p->lm_weight = o.lm_weight;
  p->bonus = o.bonus;
}

// The op's arguments, checked (contents of the lexicon and the LM aside) and contiguous.
struct Inputs {
  Options opt;
  at::Tensor log_probs;  // (B, T, C) float32 or float64: half and bfloat16 are converted, exactly
  at::Tensor lengths;    // (B,) int64
  bool has_lexicon = false;
  at::Tensor trie_offsets, trie_labels, trie_children, trie_is_word;
  beam_checks::TrieSizes trie_sizes{};
  std::optional<int64_t> word_separator;
  bool has_lm = false;
  at::Tensor lm_keys, lm_values, lm_buckets, lm_filter, lm_token_map;
  beam_checks::LMSizes lm_sizes{};
};

inline Inputs read_inputs(const at::Tensor& log_probs, const at::Tensor& lengths, int64_t blank, int64_t beam_width,
                          int64_t nbest, std::optional<int64_t> top_k, std::optional<double> beam_threshold,
                          std::optional<double> blank_skip_threshold, std::optional<double> token_min_logp,
                          const std::optional<at::Tensor>& trie_offsets, const std::optional<at::Tensor>& trie_labels,
                          const std::optional<at::Tensor>& trie_children,
                          const std::optional<at::Tensor>& trie_is_word, std::optional<int64_t> word_separator,
                          const std::optional<at::Tensor>& lm_keys, const std::optional<at::Tensor>& lm_values,
                          const std::optional<at::Tensor>& lm_buckets, const std::optional<at::Tensor>& lm_filter,
                          const std::optional<at::Tensor>& lm_token_map, int64_t lm_order, int64_t lm_bos,
                          double lm_weight, double insertion_bonus, int64_t max_lm_order) {
  beam_checks::check_inputs_and_options(log_probs, lengths, blank, beam_width, nbest, top_k, beam_threshold,
                                        blank_skip_threshold, token_min_logp, lm_weight, insertion_bonus);
  const at::Device device = log_probs.device();
  Inputs in;
  Options& o = in.opt;
  o.B = log_probs.size(0);
  o.T = log_probs.size(1);
  o.C = log_probs.size(2);
  o.blank = blank;
  o.beam_width = beam_width;
  o.nbest = nbest;
  if (top_k.has_value() && *top_k < o.C - 1) {
    o.use_top_k = true;
    o.top_k = *top_k;
  }
  if (beam_threshold.has_value() && std::isfinite(*beam_threshold)) {
    o.use_threshold = true;
    o.beam_threshold = *beam_threshold;
  }
  if (blank_skip_threshold.has_value()) {
    o.use_skip = true;
    o.skip_floor = std::log(*blank_skip_threshold);
  }
  if (token_min_logp.has_value() && *token_min_logp != -std::numeric_limits<double>::infinity()) {
    o.use_token_floor = true;
    o.token_floor = *token_min_logp;
  }
  o.lm_weight = lm_weight;
  o.bonus = insertion_bonus;

  in.lengths = lengths.contiguous();
  in.log_probs = log_probs;
  if (log_probs.scalar_type() != at::kFloat && log_probs.scalar_type() != at::kDouble) {
    in.log_probs = log_probs.to(at::kFloat);  // exact: the search runs in float64 anyway
  }
  in.log_probs = in.log_probs.contiguous();

  in.has_lexicon = trie_offsets.has_value() || trie_labels.has_value() || trie_children.has_value() ||
                   trie_is_word.has_value();
  if (in.has_lexicon) {
    in.trie_sizes =
        beam_checks::check_trie_tensors(trie_offsets, trie_labels, trie_children, trie_is_word, device);
    in.trie_offsets = trie_offsets->contiguous();
    in.trie_labels = trie_labels->contiguous();
    in.trie_children = trie_children->contiguous();
    in.trie_is_word = trie_is_word->contiguous();
    if (word_separator.has_value()) {
      beam_checks::check_word_separator(*word_separator, o.C, blank);
      o.separator = *word_separator;
    }
    in.word_separator = word_separator;
  } else {
    TORCH_CHECK(!word_separator.has_value(), "word_separator requires a lexicon");
  }

  in.has_lm = lm_keys.has_value() || lm_values.has_value() || lm_buckets.has_value() || lm_filter.has_value() ||
              lm_token_map.has_value();
  if (in.has_lm) {
    in.lm_sizes = beam_checks::check_lm_tensors(lm_keys, lm_values, lm_buckets, lm_filter, lm_token_map, lm_order,
                                                lm_bos, max_lm_order, o.C, device);
    in.lm_keys = lm_keys->contiguous();
    in.lm_values = lm_values->contiguous();
    in.lm_buckets = lm_buckets->contiguous();
    in.lm_filter = lm_filter->contiguous();
    in.lm_token_map = lm_token_map->contiguous();
    o.use_lm = lm_weight != 0.0;
    o.lm_bos = lm_bos;
    if (o.use_lm) o.lm_order = static_cast<int>(lm_order);
  }
  return in;
}

// A view of LM tensors in host memory (the op's own on the CPU, host copies for the CUDA op's checks).
inline ctc::LMView lm_view(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& buckets,
                           const at::Tensor& filter, const beam_checks::LMSizes& sizes) {
  ctc::LMView lm;
  lm.keys = reinterpret_cast<const uint64_t*>(keys.data_ptr<int64_t>());
  lm.values = values.data_ptr<double>();
  lm.buckets = buckets.data_ptr<int64_t>();
  lm.size = sizes.rows;
  lm.filter = reinterpret_cast<const uint64_t*>(filter.data_ptr<int64_t>());
  lm.filter_mask = static_cast<uint64_t>(sizes.filter_words) * 64 - 1;
  lm.shift = 64 - sizes.bits;
  return lm;
}

// The op's outputs, on log_probs' device; N = nbest.
struct Outputs {
  at::Tensor tokens;         // (B, N, T) int64
  at::Tensor token_lengths;  // (B, N) int64
  at::Tensor token_frames;   // (B, N, T) int64
  at::Tensor confidences;    // (B, N, T) float32
  at::Tensor scores, acoustic, lm_scores;  // (B, N) float64

  explicit Outputs(const Inputs& in) {
    const int64_t B = in.opt.B, T = in.opt.T, N = in.opt.nbest;
    const auto longs = in.log_probs.options().dtype(at::kLong);
    const auto doubles = in.log_probs.options().dtype(at::kDouble);
    tokens = at::empty({B, N, T}, longs);
    token_lengths = at::empty({B, N}, longs);
    token_frames = at::empty({B, N, T}, longs);
    confidences = at::empty({B, N, T}, in.log_probs.options().dtype(at::kFloat));
    scores = at::empty({B, N}, doubles);
    acoustic = at::empty({B, N}, doubles);
    lm_scores = at::empty({B, N}, doubles);
  }

  // Points the output fields of an op's Params (the same names in both) at these tensors.
  template <class Params>
  void set_pointers(Params* p) const {
    p->tokens = tokens.data_ptr<int64_t>();
    p->out_lengths = token_lengths.data_ptr<int64_t>();
    p->frames = token_frames.data_ptr<int64_t>();
    p->confidences = confidences.data_ptr<float>();
    p->scores = scores.data_ptr<double>();
    p->acoustic = acoustic.data_ptr<double>();
    p->lm_scores = lm_scores.data_ptr<double>();
  }

  BeamResult result() const { return {tokens, token_lengths, token_frames, confidences, scores, acoustic, lm_scores}; }
};

// The op on one device: Device::Guard is held while it runs (the CUDA op's device guard, which first checks that
// log_probs is a CUDA tensor); Device::search(inputs) makes the checks only it makes, runs and returns the outputs.
template <class Device>
BeamResult ctc_beam_search_op(const at::Tensor& log_probs, const at::Tensor& lengths, int64_t blank,
                              int64_t beam_width, int64_t nbest, std::optional<int64_t> top_k,
                              std::optional<double> beam_threshold, std::optional<double> blank_skip_threshold,
                              std::optional<double> token_min_logp, const std::optional<at::Tensor>& trie_offsets,
                              const std::optional<at::Tensor>& trie_labels,
                              const std::optional<at::Tensor>& trie_children,
                              const std::optional<at::Tensor>& trie_is_word, std::optional<int64_t> word_separator,
                              const std::optional<at::Tensor>& lm_keys, const std::optional<at::Tensor>& lm_values,
                              const std::optional<at::Tensor>& lm_buckets, const std::optional<at::Tensor>& lm_filter,
                              const std::optional<at::Tensor>& lm_token_map, int64_t lm_order, int64_t lm_bos,
                              double lm_weight, double insertion_bonus) {
  const typename Device::Guard guard(log_probs);
  return Device::search(read_inputs(log_probs, lengths, blank, beam_width, nbest, top_k, beam_threshold,
                                    blank_skip_threshold, token_min_logp, trie_offsets, trie_labels, trie_children,
                                    trie_is_word, word_separator, lm_keys, lm_values, lm_buckets, lm_filter,
                                    lm_token_map, lm_order, lm_bos, lm_weight, insertion_bonus,
                                    Device::kMaxLMOrder));
}

}  // namespace beam_args
}  // namespace crnn_fast
