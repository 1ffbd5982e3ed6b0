// crnn_fast::ctc_beam_search on the CPU: the op's arguments (csrc/ctc_beam_search_args.h), the lexicon's and
// the LM's contents checked in place, then one SequenceDecoder (csrc/cpu/ctc_beam_search_decoder.h) per thread,
// each taking the batch's sequences off a shared counter.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <vector>

#include "../ctc_beam_search_args.h"
#include "../ctc_lm.h"
#include "ctc_beam_search_decoder.h"

namespace crnn_fast {
namespace {

using ctc_cpu::Params;
using ctc_cpu::RowStatus;
using ctc_cpu::SequenceDecoder;
using ctc_cpu::Workspace;

struct CpuSearch {
  struct Guard {
    explicit Guard(const at::Tensor&) {}
  };
  static constexpr int64_t kMaxLMOrder = ctc_cpu::kMaxLMOrder;
  static beam_args::BeamResult search(const beam_args::Inputs& in);
};

beam_args::BeamResult CpuSearch::search(const beam_args::Inputs& in) {
  const int64_t B = in.opt.B, T = in.opt.T, C = in.opt.C, blank = in.opt.blank;
  const int64_t* len = in.lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(len[b] >= 0 && len[b] <= T, "lengths[", b, "] must be in [0, T=", T, "], got ", len[b]);
  }
  const at::Tensor& log_probs = in.log_probs;

  Params P;
  beam_args::set_options(in.opt, &P);
  if (in.has_lexicon) {
    const int64_t* off = in.trie_offsets.data_ptr<int64_t>();
    const int64_t* lab = in.trie_labels.data_ptr<int64_t>();
    const int64_t* chi = in.trie_children.data_ptr<int64_t>();
    beam_checks::check_trie_contents(off, lab, chi, in.trie_sizes, C, blank, in.word_separator);
    P.use_lexicon = true;
    P.trie.offsets = off;
    P.trie.labels = lab;
    P.trie.children = chi;
    P.trie.is_word = in.trie_is_word.data_ptr<bool>();
    P.trie.num_nodes = in.trie_sizes.nodes;
  }

  std::vector<double> lm_unigram;
  std::vector<int64_t> word_list;
  std::vector<int32_t> word_off, word_cls;
  if (in.has_lm) {
    const int64_t* bk = in.lm_buckets.data_ptr<int64_t>();
    const double* vals = in.lm_values.data_ptr<double>();
    const int64_t* tm = in.lm_token_map.data_ptr<int64_t>();
    beam_checks::check_lm_contents(bk, vals, tm, in.lm_sizes, C, blank);
    P.lm = beam_args::lm_view(in.lm_keys, in.lm_values, in.lm_buckets, in.lm_filter, in.lm_sizes);
    P.lm_token_map = tm;
    const int64_t empty = P.lm.find(ctc::kSeed);  // the row of the empty n-gram, if any
    P.lm_max_unigram = empty >= 0 ? P.lm.log10_max_next(empty) : 0.0;
    lm_unigram.assign(C, -std::numeric_limits<double>::infinity());
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = c == blank ? -1 : P.lm.find(ctc::mix(ctc::kSeed, tm[c]));
      if (i >= 0) lm_unigram[c] = P.lm.log10_prob(i);
    }
    P.lm_unigram = lm_unigram.data();
    // Classes by LM word (counting sort by word id).
    int64_t V = 0;
    for (int64_t c = 0; c < C; ++c) {
      if (c != blank) V = std::max<int64_t>(V, tm[c] + 1);
    }
    std::vector<int32_t> count(V + 1, 0);
    for (int64_t c = 0; c < C; ++c) {
      if (c != blank) ++count[tm[c] + 1];
    }
    for (int64_t w = 0; w < V; ++w) {
      if (count[w + 1] > 0) {
        word_list.push_back(w);
        word_off.push_back(static_cast<int32_t>(word_cls.size()));
        word_cls.resize(word_cls.size() + count[w + 1]);
      }
    }
    word_off.push_back(static_cast<int32_t>(word_cls.size()));
    {
      std::vector<int32_t> fill(V, -1);
      for (size_t i = 0; i < word_list.size(); ++i) fill[word_list[i]] = word_off[i];
      for (int64_t c = 0; c < C; ++c) {
        if (c != blank) word_cls[fill[tm[c]]++] = static_cast<int32_t>(c);
      }
    }
    P.lm_words = V;
    P.n_words = static_cast<int64_t>(word_list.size());
    P.word_list = word_list.data();
    P.word_off = word_off.data();
    P.word_cls = word_cls.data();
  }

  const beam_args::Outputs out(in);
  out.set_pointers(&P);

  std::atomic<int64_t> next_item{0};
  // The first problem a worker found (sequence, frame, what), reported after the parallel section.
  std::mutex bad_mu;
  int64_t bad_seq = -1, bad_frame = -1;
  RowStatus bad_status = RowStatus::kOk;
  const int64_t workers = std::min<int64_t>(B, std::max<int>(1, at::get_num_threads()));
  auto run = [&](auto dummy) {
    using scalar_t = decltype(dummy);
    const scalar_t* data = log_probs.data_ptr<scalar_t>();
    // One worker per thread, each pulling sequences off a shared counter: lengths (and so costs) vary.
    at::parallel_for(0, workers, 1, [&](int64_t w_begin, int64_t w_end) {
      for (int64_t w = w_begin; w < w_end; ++w) {
        Workspace ws;
        SequenceDecoder<scalar_t> dec(P, ws);
        for (int64_t b = next_item++; b < B; b = next_item++) {
          int64_t frame = -1;
          const RowStatus status = dec.run(b, data + b * T * C, len[b], &frame);
          if (status != RowStatus::kOk) {
            std::lock_guard<std::mutex> lock(bad_mu);
            if (bad_seq < 0 || b < bad_seq) {
              bad_seq = b;
              bad_frame = frame;
              bad_status = status;
            }
          }
        }
      }
    });
  };
  if (log_probs.scalar_type() == at::kDouble) {
    run(double{});
  } else {
    run(float{});
  }
  TORCH_CHECK(bad_status != RowStatus::kNonFinite, "log_probs must not contain NaN or +inf (sequence ", bad_seq,
              " does)");
  TORCH_CHECK(bad_status != RowStatus::kImpossible,
              "log_probs must give some class a non-zero probability at every frame: frame ", bad_frame,
              " of sequence ", bad_seq, " is -inf for every class");
  TORCH_CHECK(bad_status != RowStatus::kNoAlignment, "ctc_beam_search: a hypothesis of sequence ", bad_seq,
              " has no alignment whose log-probability sums to more than -inf (log_probs too close to -inf)");
  return out.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(crnn_fast, CPU, m) { m.impl("ctc_beam_search", &beam_args::ctc_beam_search_op<CpuSearch>); }

}  // namespace crnn_fast
