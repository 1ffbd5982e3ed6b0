// Torch glue of the CUDA CTC prefix beam search (csrc/cuda/ctc_beam_search_kernel.cu): the CPU op's checks,
// allocation of outputs and scratch, device guard, current stream. Host-side checks of the lexicon and LM
// contents read a host copy of those tensors (they are small next to log_probs, and a bad index in them
// must raise, not fault on the device); the per-sequence status comes back in one synchronising copy.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../ctc_beam_search_checks.h"
#include "ctc_beam_search_kernels.h"

namespace crnn_fast {
namespace {

using BeamResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Lexicon and LM tensors already checked (their host copies read), by identity: data pointer, size and version
// counter of each tensor, plus the arguments the checks depend on. A decoder passes the same device tensors on
// every call; the checks (a device-to-host copy and a scan) then run once. An entry holds references to its
// tensors, so their memory cannot be freed and reused by other tensors while the entry lives. Writes through
// raw pointers that bypass the version counter are not seen: not a supported way to change a lexicon or an LM.
struct Fingerprint {
  at::Tensor hold[4];
  const void* ptr[4] = {};
  int64_t numel[4] = {};
  uint32_t version[4] = {};
  int64_t extra[3] = {};
  double value = 0;  // what the check computed (the LM's largest unigram log10 probability)
  bool same(const Fingerprint& o) const {
    for (int i = 0; i < 4; ++i) {
      if (ptr[i] != o.ptr[i] || numel[i] != o.numel[i] || version[i] != o.version[i]) return false;
    }
    return extra[0] == o.extra[0] && extra[1] == o.extra[1] && extra[2] == o.extra[2];
  }
};

Fingerprint fingerprint(const at::Tensor* t[4], int64_t e0, int64_t e1, int64_t e2) {
  Fingerprint f;
  for (int i = 0; i < 4; ++i) {
    f.hold[i] = *t[i];
    f.ptr[i] = t[i]->data_ptr();
    f.numel[i] = t[i]->numel();
    f.version[i] = t[i]->unsafeGetTensorImpl()->version_counter().current_version();
  }
  f.extra[0] = e0;
  f.extra[1] = e1;
  f.extra[2] = e2;
  return f;
}

class CheckedCache {
 public:
  bool find(const Fingerprint& f, double* value) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Fingerprint& e : entries_) {
      if (e.same(f)) {
        *value = e.value;
        return true;
      }
    }
    return false;
  }
  void add(const Fingerprint& f) {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= 4) entries_.erase(entries_.begin());
    entries_.push_back(f);
  }

 private:
  std::mutex mu_;
  std::vector<Fingerprint> entries_;
};

CheckedCache& trie_cache() {
  static CheckedCache c;
  return c;
}
CheckedCache& lm_cache() {
  static CheckedCache c;
  return c;
}

BeamResult ctc_beam_search_cuda(const at::Tensor& log_probs_in, const at::Tensor& lengths_in, int64_t blank,
                                int64_t beam_width, int64_t nbest, std::optional<int64_t> top_k,
                                std::optional<double> beam_threshold, std::optional<double> blank_skip_threshold,
                                std::optional<double> token_min_logp,
                                const std::optional<at::Tensor>& trie_offsets_in,
                                const std::optional<at::Tensor>& trie_labels_in,
                                const std::optional<at::Tensor>& trie_children_in,
                                const std::optional<at::Tensor>& trie_is_word_in,
                                std::optional<int64_t> word_separator, const std::optional<at::Tensor>& lm_keys_in,
                                const std::optional<at::Tensor>& lm_values_in,
                                const std::optional<at::Tensor>& lm_buckets_in,
                                const std::optional<at::Tensor>& lm_filter_in,
                                const std::optional<at::Tensor>& lm_token_map_in, int64_t lm_order, int64_t lm_bos,
                                double lm_weight, double insertion_bonus) {
  TORCH_CHECK(log_probs_in.is_cuda(), "log_probs must be a CUDA tensor, got ", log_probs_in.device());
  beam_checks::check_inputs_and_options(log_probs_in, lengths_in, blank, beam_width, nbest, top_k, beam_threshold,
                                        blank_skip_threshold, token_min_logp, lm_weight, insertion_bonus);
  const at::Device dev = log_probs_in.device();
  const int64_t B = log_probs_in.size(0), T = log_probs_in.size(1), C = log_probs_in.size(2);
  TORCH_CHECK(beam_width <= kCtcBeamCudaMaxBeam, "beam_width must be <= ", kCtcBeamCudaMaxBeam,
              " on CUDA, got ", beam_width, " (use backend='cpu' for wider beams)");
  TORCH_CHECK(B < (1LL << 31), "log_probs has too many sequences for the CUDA kernel (B=", B, ")");
  TORCH_CHECK(1 + T * beam_width < (1LL << 31), "T * beam_width too large for the CUDA kernel");

  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor lengths = lengths_in.contiguous();
  at::Tensor log_probs = log_probs_in;
  if (log_probs.scalar_type() != at::kFloat && log_probs.scalar_type() != at::kDouble) {
    log_probs = log_probs.to(at::kFloat);  // exact: half/bfloat16 values are floats
  }
  log_probs = log_probs.contiguous();

  CtcBeamSearchParams P{};
  P.log_probs = log_probs.data_ptr();
  P.is_double = log_probs.scalar_type() == at::kDouble;
  P.lengths = lengths.data_ptr<int64_t>();
  P.B = B;
  P.T = T;
  P.C = C;
  P.blank = blank;
  P.beam_width = beam_width;
  P.nbest = nbest;
  P.separator = -1;
  if (top_k.has_value() && *top_k < C - 1) {
    P.use_top_k = true;
    P.top_k = *top_k;
  }
  if (beam_threshold.has_value() && std::isfinite(*beam_threshold)) {
    P.use_threshold = true;
    P.beam_threshold = *beam_threshold;
  }
  if (blank_skip_threshold.has_value()) {
    P.use_skip = true;
    P.skip_floor = std::log(*blank_skip_threshold);
  }
  if (token_min_logp.has_value() && *token_min_logp != -std::numeric_limits<double>::infinity()) {  // -inf: none
    P.use_token_floor = true;
    P.token_floor = *token_min_logp;
  }

  // Lexicon trie: the CPU op's checks, on a host copy.
  const bool any_trie = trie_offsets_in.has_value() || trie_labels_in.has_value() || trie_children_in.has_value() ||
                        trie_is_word_in.has_value();
  at::Tensor trie_offsets, trie_labels, trie_children, trie_is_word;
  if (any_trie) {
    const beam_checks::TrieSizes sizes =
        beam_checks::check_trie_tensors(trie_offsets_in, trie_labels_in, trie_children_in, trie_is_word_in, dev);
    trie_offsets = trie_offsets_in->contiguous();
    trie_labels = trie_labels_in->contiguous();
    trie_children = trie_children_in->contiguous();
    trie_is_word = trie_is_word_in->contiguous();
    if (word_separator.has_value()) {
      beam_checks::check_word_separator(*word_separator, C, blank);
      P.separator = *word_separator;
    }
    const at::Tensor* trie_t[4] = {&*trie_offsets_in, &*trie_labels_in, &*trie_children_in, &*trie_is_word_in};
    Fingerprint trie_fp = fingerprint(trie_t, C, blank, word_separator.value_or(-1));
    double unused = 0;
    if (!trie_cache().find(trie_fp, &unused)) {
      const at::Tensor off_h = trie_offsets.cpu(), lab_h = trie_labels.cpu(), chi_h = trie_children.cpu();
      beam_checks::check_trie_contents(off_h.data_ptr<int64_t>(), lab_h.data_ptr<int64_t>(),
                                       chi_h.data_ptr<int64_t>(), sizes, C, blank, word_separator);
      trie_cache().add(trie_fp);
    }
    P.use_lexicon = true;
    P.trie_offsets = trie_offsets.data_ptr<int64_t>();
    P.trie_labels = trie_labels.data_ptr<int64_t>();
    P.trie_children = trie_children.data_ptr<int64_t>();
    P.trie_is_word = trie_is_word.data_ptr<bool>();
  } else {
    TORCH_CHECK(!word_separator.has_value(), "word_separator requires a lexicon");
  }

  // Language model: the CPU op's checks, on a host copy.
  const bool any_lm = lm_keys_in.has_value() || lm_values_in.has_value() || lm_buckets_in.has_value() ||
                      lm_filter_in.has_value() || lm_token_map_in.has_value();
  at::Tensor lm_keys, lm_values, lm_buckets, lm_filter, lm_token_map;
  if (any_lm) {
    const beam_checks::LMSizes sizes =
        beam_checks::check_lm_tensors(lm_keys_in, lm_values_in, lm_buckets_in, lm_filter_in, lm_token_map_in, lm_order,
                                      lm_bos, kCtcBeamCudaMaxLMOrder, C, dev);
    lm_keys = lm_keys_in->contiguous();
    lm_values = lm_values_in->contiguous();
    lm_buckets = lm_buckets_in->contiguous();
    lm_filter = lm_filter_in->contiguous();
    lm_token_map = lm_token_map_in->contiguous();
    const int64_t nw = sizes.filter_words;
    const int bits = sizes.bits;
    const at::Tensor* lm_t[4] = {&*lm_keys_in, &*lm_values_in, &*lm_buckets_in, &*lm_token_map_in};
    Fingerprint lm_fp = fingerprint(lm_t, C, blank, 0);
    if (!lm_cache().find(lm_fp, &lm_fp.value)) {
      const at::Tensor bk_h = lm_buckets.cpu(), vals_h = lm_values.cpu(), tm_h = lm_token_map.cpu();
      const int64_t* bk = bk_h.data_ptr<int64_t>();
      const double* vals = vals_h.data_ptr<double>();
      beam_checks::check_lm_contents(bk, vals, tm_h.data_ptr<int64_t>(), sizes, C, blank);
      // The empty n-gram's row (key = the fold of no word) carries the largest unigram log10 probability.
      const at::Tensor keys_h = lm_keys.cpu();
      const uint64_t* kh = reinterpret_cast<const uint64_t*>(keys_h.data_ptr<int64_t>());
      const uint64_t seed = 0x2545F4914F6CDD1DULL;  // ctc::kSeed
      const uint64_t bucket = seed >> (64 - bits);
      const uint64_t* first = kh + bk[bucket];
      const uint64_t* last = kh + bk[bucket + 1];
      const uint64_t* it = std::lower_bound(first, last, seed);
      lm_fp.value = it != last && *it == seed ? vals[3 * (it - kh) + 2] : 0.0;
      lm_cache().add(lm_fp);
    }
    P.lm_max_unigram = lm_fp.value;
    P.lm_keys = reinterpret_cast<const uint64_t*>(lm_keys.data_ptr<int64_t>());
    P.lm_values = lm_values.data_ptr<double>();
    P.lm_buckets = lm_buckets.data_ptr<int64_t>();
    P.lm_shift = 64 - bits;
    P.lm_filter = reinterpret_cast<const uint64_t*>(lm_filter.data_ptr<int64_t>());
    P.lm_filter_mask = static_cast<uint64_t>(nw) * 64 - 1;
    P.lm_token_map = lm_token_map.data_ptr<int64_t>();
    P.lm_order = static_cast<int>(lm_order);
    P.lm_bos = lm_bos;
    P.use_lm = lm_weight != 0.0;
  }
  if (!P.use_lm) P.lm_order = 1;
  P.lm_weight = lm_weight;
  P.bonus = insertion_bonus;

  const auto long_opts = log_probs.options().dtype(at::kLong);
  const auto dbl_opts = log_probs.options().dtype(at::kDouble);
  at::Tensor tokens = at::empty({B, nbest, T}, long_opts);
  at::Tensor token_lengths = at::empty({B, nbest}, long_opts);
  at::Tensor token_frames = at::empty({B, nbest, T}, long_opts);
  at::Tensor confidences = at::empty({B, nbest, T}, log_probs.options().dtype(at::kFloat));
  at::Tensor scores = at::empty({B, nbest}, dbl_opts);
  at::Tensor acoustic = at::empty({B, nbest}, dbl_opts);
  at::Tensor lm_scores = at::empty({B, nbest}, dbl_opts);
  // status and bad_frames side by side: one copy to the host
  at::Tensor status_frames = at::empty({2, B}, log_probs.options().dtype(at::kInt));
  int64_t n_nodes = 0, n_ctx = 0, n_acc = 0, n_meta = 0, n_alpha = 0, n_steps = 0;
  ctc_beam_search_scratch_sizes(B, T, beam_width, P.lm_order, P.use_lm, &n_nodes, &n_ctx, &n_acc, &n_meta, &n_alpha,
                                &n_steps);
  at::Tensor nodes = at::empty({n_nodes}, log_probs.options().dtype(at::kInt));
  at::Tensor lm_ctx = at::empty({n_ctx}, long_opts);
  at::Tensor lm_acc = at::empty({n_acc}, dbl_opts);
  at::Tensor lm_meta = at::empty({n_meta}, log_probs.options().dtype(at::kInt));
  at::Tensor align_alpha = at::empty({n_alpha}, dbl_opts);
  at::Tensor align_steps = at::empty({n_steps}, log_probs.options().dtype(at::kByte));
  P.tokens = tokens.data_ptr<int64_t>();
  P.out_lengths = token_lengths.data_ptr<int64_t>();
  P.frames = token_frames.data_ptr<int64_t>();
  P.confidences = confidences.data_ptr<float>();
  P.scores = scores.data_ptr<double>();
  P.acoustic = acoustic.data_ptr<double>();
  P.lm_scores = lm_scores.data_ptr<double>();
  P.status = status_frames.data_ptr<int32_t>();
  P.bad_frames = P.status + B;
  P.nodes = nodes.data_ptr<int32_t>();
  P.lm_ctx = lm_ctx.data_ptr<int64_t>();
  P.lm_acc = lm_acc.data_ptr<double>();
  P.lm_meta = lm_meta.data_ptr<int32_t>();
  P.align_alpha = align_alpha.data_ptr<double>();
  P.align_steps = align_steps.data_ptr<uint8_t>();

  const cudaError_t err = launch_ctc_beam_search(P, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "ctc_beam_search CUDA launch failed: ", cudaGetErrorString(err));
  const at::Tensor status_h = status_frames.cpu();  // synchronises
  const int32_t* st = status_h.data_ptr<int32_t>();
  const int32_t* bad_frame = st + B;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(st[b] != 2, "lengths[", b, "] must be in [0, T=", T, "]");
    TORCH_CHECK(st[b] != 1, "log_probs must not contain NaN or +inf (sequence ", b, " does)");
    TORCH_CHECK(st[b] != 3, "log_probs must give some class a non-zero probability at every frame: frame ",
                bad_frame[b], " of sequence ", b, " is -inf for every class");
    TORCH_CHECK(st[b] != 4, "ctc_beam_search: a hypothesis of sequence ", b,
                " has no alignment whose log-probability sums to more than -inf (log_probs too close to -inf)");
  }
  return {tokens, token_lengths, token_frames, confidences, scores, acoustic, lm_scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(crnn_fast, CUDA, m) { m.impl("ctc_beam_search", &ctc_beam_search_cuda); }

}  // namespace crnn_fast
