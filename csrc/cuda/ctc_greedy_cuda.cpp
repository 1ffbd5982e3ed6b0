// Torch glue of the CUDA greedy CTC decoder: checks, scratch, device guard, current stream.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "../ctc_greedy_outputs.h"
#include "kernels.h"

namespace crnn_fast {
namespace {

FloatType float_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return FloatType::kFloat32;
    case at::kDouble: return FloatType::kFloat64;
    case at::kHalf: return FloatType::kFloat16;
    case at::kBFloat16: return FloatType::kBFloat16;
    default: TORCH_CHECK(false, "log_probs must be float16, bfloat16, float32 or float64, got ", t);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ctc_greedy_cuda(
    const at::Tensor& log_probs_in, const at::Tensor& lengths_in, int64_t blank) {
  TORCH_CHECK(log_probs_in.is_cuda(), "log_probs must be a CUDA tensor, got ", log_probs_in.device());
  check_ctc_inputs(log_probs_in, lengths_in, blank);
  const int64_t B = log_probs_in.size(0), T = log_probs_in.size(1), C = log_probs_in.size(2);
  // Range checks of lengths are done by the Python wrapper on the host copy it already holds; here
  // (a device tensor) they would cost a synchronisation. The kernel clamps nothing, so do them there.
  const c10::cuda::CUDAGuard guard(log_probs_in.device());
  const at::Tensor log_probs = log_probs_in.contiguous();
  const at::Tensor lengths = lengths_in.contiguous();
  const GreedyOutputs out(log_probs);
  const auto acc_type = GreedyOutputs::accumulate_type(log_probs);
  at::Tensor best_class = at::empty({B, T}, log_probs.options().dtype(at::kInt));
  at::Tensor best_logprob = at::empty({B, T}, log_probs.options().dtype(acc_type));
  at::Tensor bad_input = at::empty({B}, log_probs.options().dtype(at::kInt));

  CtcGreedyParams p{};
  p.log_probs = log_probs.data_ptr();
  p.lengths = lengths.data_ptr<int64_t>();
  p.B = B;
  p.T = T;
  p.C = C;
  p.blank = blank;
  p.dtype = float_type(log_probs.scalar_type());
  p.tokens = out.tokens.data_ptr<int64_t>();
  p.token_lengths = out.token_lengths.data_ptr<int64_t>();
  p.token_frames = out.token_frames.data_ptr<int64_t>();
  p.token_logprobs = out.token_logprobs.data_ptr();
  p.path_logprob = out.path_logprob.data_ptr();
  p.best_class = best_class.data_ptr<int32_t>();
  p.best_logprob = best_logprob.data_ptr();
  p.bad_input = bad_input.data_ptr<int32_t>();
  const cudaError_t err = launch_ctc_greedy(p, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "ctc_greedy CUDA launch failed: ", cudaGetErrorString(err));
  const at::Tensor bad_h = bad_input.cpu();  // synchronises
  const int32_t* bad = bad_h.data_ptr<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(!(bad[b] & 1), "log_probs must not contain NaN or +inf (sequence ", b, " does)");
    TORCH_CHECK(!(bad[b] & 2), "log_probs must give some class a non-zero probability at every frame: sequence ", b,
                " has a frame that is -inf for every class");
  }
  return out.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(crnn_fast, CUDA, m) { m.impl("ctc_greedy", &ctc_greedy_cuda); }

}  // namespace crnn_fast
