// The outputs of crnn_fast::ctc_greedy (its schema: csrc/ops.cpp), allocated alike by the CPU and the CUDA op.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <tuple>

namespace crnn_fast {

struct GreedyOutputs {
  at::Tensor tokens;          // (B, T) int64
  at::Tensor token_lengths;   // (B,) int64
  at::Tensor token_frames;    // (B, T) int64
  at::Tensor token_logprobs;  // (B, T) float64 for float64 log_probs, else float32
  at::Tensor path_logprob;    // (B,) as token_logprobs

  // For log_probs (B, T, C), on its device.
  explicit GreedyOutputs(const at::Tensor& log_probs) {
    const int64_t B = log_probs.size(0), T = log_probs.size(1);
    const auto longs = log_probs.options().dtype(at::kLong);
    const auto acc = log_probs.options().dtype(accumulate_type(log_probs));
    tokens = at::empty({B, T}, longs);
    token_lengths = at::empty({B}, longs);
    token_frames = at::empty({B, T}, longs);
    token_logprobs = at::empty({B, T}, acc);
    path_logprob = at::empty({B}, acc);
  }

  static at::ScalarType accumulate_type(const at::Tensor& log_probs) {
    return log_probs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> result() const {
    return {tokens, token_lengths, token_frames, token_logprobs, path_logprob};
  }
};

}  // namespace crnn_fast
