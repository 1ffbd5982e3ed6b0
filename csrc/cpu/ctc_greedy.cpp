// Greedy (best-path) CTC decoding on the CPU, parallel over the batch.
//   B batch, T frames, C classes (blank included).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <mutex>
#include <tuple>

#include "../checks.h"
#include "../ctc_greedy_outputs.h"

namespace crnn_fast {
namespace {

using GreedyResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The first bad row the workers found (lowest sequence), reported after the parallel section.
struct BadRows {
  enum Kind { kNone, kNonFinite, kImpossible };
  std::mutex mu;
  int64_t seq = -1, frame = -1;
  Kind kind = kNone;
  void report(int64_t b, int64_t t, Kind k) {
    std::lock_guard<std::mutex> lock(mu);
    if (seq < 0 || b < seq) {
      seq = b;
      frame = t;
      kind = k;
    }
  }
};

template <typename scalar_t, typename acc_t>
void ctc_greedy_rows(const scalar_t* lp, const int64_t* lengths, int64_t b_begin, int64_t b_end, int64_t T,
                     int64_t C, int64_t blank, int64_t* tokens, int64_t* token_lengths, int64_t* token_frames,
                     acc_t* token_logprobs, acc_t* path_logprob, BadRows& bad) {
  for (int64_t b = b_begin; b < b_end; ++b) {
    int64_t n = 0;
    int64_t prev = -1;
    acc_t path = 0;
    for (int64_t t = 0; t < lengths[b]; ++t) {
      const scalar_t* row = lp + (b * T + t) * C;
      int64_t best = 0;
      acc_t best_v = static_cast<acc_t>(row[0]);
      bool finite = !std::isnan(best_v) && best_v != INFINITY;
      for (int64_t c = 1; c < C; ++c) {
        const acc_t v = static_cast<acc_t>(row[c]);
        finite &= !std::isnan(v) && v != INFINITY;
        if (v > best_v) {  // strict: ties go to the lowest index, as torch.argmax
          best_v = v;
          best = c;
        }
      }
      if (!finite) {
        bad.report(b, t, BadRows::kNonFinite);
        return;
      }
      if (best_v == -static_cast<acc_t>(INFINITY)) {  // -inf for every class: no path at all
        bad.report(b, t, BadRows::kImpossible);
        return;
      }
      path += best_v;
      if (best != blank) {
        if (best != prev) {
          tokens[b * T + n] = best;
          token_frames[b * T + n] = t;
          token_logprobs[b * T + n] = best_v;
          ++n;
        } else if (best_v > token_logprobs[b * T + n - 1]) {
          token_logprobs[b * T + n - 1] = best_v;
        }
      }
      prev = best;
    }
    for (int64_t k = n; k < T; ++k) {
      tokens[b * T + k] = -1;
      token_frames[b * T + k] = -1;
      token_logprobs[b * T + k] = 0;
    }
    token_lengths[b] = n;
    path_logprob[b] = path;
  }
}

GreedyResult ctc_greedy_cpu(const at::Tensor& log_probs_in, const at::Tensor& lengths_in, int64_t blank) {
  check_ctc_inputs(log_probs_in, lengths_in, blank);
  const int64_t B = log_probs_in.size(0), T = log_probs_in.size(1), C = log_probs_in.size(2);
  const at::Tensor log_probs = log_probs_in.contiguous();
  const at::Tensor lengths = lengths_in.contiguous();
  const int64_t* len = lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(len[b] >= 0 && len[b] <= T, "lengths[", b, "] must be in [0, T=", T, "], got ", len[b]);
  }

  const GreedyOutputs out(log_probs);
  BadRows bad;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctc_greedy_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    at::parallel_for(0, B, 1, [&](int64_t b_begin, int64_t b_end) {
      ctc_greedy_rows<scalar_t, acc_t>(log_probs.data_ptr<scalar_t>(), len, b_begin, b_end, T, C, blank,
                                       out.tokens.data_ptr<int64_t>(), out.token_lengths.data_ptr<int64_t>(),
                                       out.token_frames.data_ptr<int64_t>(), out.token_logprobs.data_ptr<acc_t>(),
                                       out.path_logprob.data_ptr<acc_t>(), bad);
    });
  });
  TORCH_CHECK(bad.kind != BadRows::kNonFinite, "log_probs must not contain NaN or +inf (sequence ", bad.seq, " does)");
  TORCH_CHECK(bad.kind != BadRows::kImpossible,
              "log_probs must give some class a non-zero probability at every frame: frame ", bad.frame,
              " of sequence ", bad.seq, " is -inf for every class");
  return out.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(crnn_fast, CPU, m) { m.impl("ctc_greedy", &ctc_greedy_cpu); }

}  // namespace crnn_fast
