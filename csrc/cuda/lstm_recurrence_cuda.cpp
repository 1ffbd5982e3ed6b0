// Torch glue of the persistent LSTM recurrence (crnn_fast::lstm_recurrence): checks, allocation, device guard,
// current stream. The kernel is in lstm_recurrence_kernel.cu.
//   B batch, T time steps, H hidden size, D directions.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

#include "../checks.h"
#include "lstm_kernels.h"

namespace crnn_fast {
namespace {

const char* algo_name(int64_t algo) {
  switch (algo) {
    case 0: return "auto";
    case 1: return "cluster";
    default: return "cooperative";
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_recurrence_cuda(const at::Tensor& x_proj,
                                                                    const at::Tensor& w_hh,
                                                                    const at::Tensor& h0,
                                                                    const at::Tensor& c0,
                                                                    const std::optional<at::Tensor>& lengths,
                                                                    int64_t algo) {
  CHECK_DIM(x_proj, 3);
  CHECK_DIM(w_hh, 3);
  CHECK_DIM(h0, 3);
  CHECK_DIM(c0, 3);
  const at::ScalarType dtype = x_proj.scalar_type();
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16,
              "x_proj must be float16 or bfloat16 (the CUDA LSTM kernel computes in the input dtype with fp32 "
              "accumulation and fp32 cell state), got ",
              dtype);
  TORCH_CHECK(x_proj.is_cuda(), "x_proj must be a CUDA tensor, got device ", x_proj.device());
  CHECK_DEVICE(w_hh, x_proj.device());
  CHECK_DEVICE(h0, x_proj.device());
  CHECK_DEVICE(c0, x_proj.device());
  CHECK_DTYPE(w_hh, dtype);
  CHECK_DTYPE(h0, dtype);
  CHECK_DTYPE(c0, dtype);
  TORCH_CHECK(algo >= 0 && algo <= 2, "algo must be 0 (auto), 1 (cluster, sm_90+) or 2 (cooperative), got ", algo);

  const int64_t D = w_hh.size(0), H = w_hh.size(2);
  const int64_t B = x_proj.size(0), T = x_proj.size(1);
  TORCH_CHECK(D == 1 || D == 2, "w_hh must have shape (D, 4H, H) with D = 1 or 2 directions, got ", w_hh.sizes());
  TORCH_CHECK(H >= 1 && H <= kLstmMaxHidden, "w_hh: the CUDA LSTM kernel supports hidden sizes 1..",
              kLstmMaxHidden, ", got H=", H);
  TORCH_CHECK(w_hh.size(1) == 4 * H, "w_hh must have shape (D, 4H, H) = (", D, ", ", 4 * H, ", ", H, "), got ",
              w_hh.sizes());
  TORCH_CHECK(B > 0, "x_proj must hold at least one sequence (B > 0)");
  TORCH_CHECK(x_proj.size(2) == D * 4 * H, "x_proj must have shape (B, T, D*4H) = (", B, ", ", T, ", ", D * 4 * H,
              "), got ", x_proj.sizes());
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max() && T <= std::numeric_limits<int32_t>::max(),
              "x_proj is too large for the CUDA LSTM kernel (B and T must fit in int32), got ", x_proj.sizes());
  for (const auto& [name, state] : {std::pair<const char*, const at::Tensor&>{"h0", h0}, {"c0", c0}}) {
    TORCH_CHECK(state.size(0) == D && state.size(1) == B && state.size(2) == H, name, " must have shape (D, B, H) = (",
                D, ", ", B, ", ", H, "), got ", state.sizes());
  }

  const c10::cuda::CUDAGuard guard(x_proj.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  // The kernel takes any strides for B and T; the feature dimension must be dense.
  const at::Tensor x_c = x_proj.stride(2) == 1 ? x_proj : x_proj.contiguous();
  const at::Tensor w_c = w_hh.contiguous();
  const at::Tensor h0_c = h0.contiguous();
  const at::Tensor c0_c = c0.contiguous();

  at::Tensor lengths_d;  // on the device, or undefined for "all T"
  if (lengths.has_value() && lengths->defined()) {
    const at::Tensor& l = *lengths;
    TORCH_CHECK(l.dim() == 1, "lengths must have 1 dimension, got ", l.dim());
    TORCH_CHECK(l.scalar_type() == at::kLong, "lengths must be int64, got ", l.scalar_type());
    TORCH_CHECK(l.size(0) == B, "lengths must have B=", B, " entries, got ", l.size(0));
    if (l.is_cpu()) {
      // A host copy is checked here (cheap, no synchronisation). A device tensor is trusted: checking it would
      // synchronise; the Python wrapper checks its host copy, and the kernel clamps to [0, T] so that a bad value
      // can never address memory out of range.
      const at::Tensor lc = l.contiguous();
      const int64_t* len = lc.data_ptr<int64_t>();
      for (int64_t b = 0; b < B; ++b) {
        TORCH_CHECK(len[b] >= 0 && len[b] <= T, "lengths must be in [0, T=", T, "], got lengths[", b, "]=", len[b]);
      }
      // Through pinned memory: an asynchronous copy that never waits for the work queued before it.
      lengths_d = lc.pin_memory().to(x_proj.device(), /*non_blocking=*/true);
    } else {
      TORCH_CHECK(l.device() == x_proj.device(), "lengths must be on the CPU or on ", x_proj.device(), ", got ",
                  l.device());
      lengths_d = l.contiguous();
    }
  }

  at::Tensor out = at::empty({B, T, D * H}, x_c.options());
  at::Tensor h_n = at::empty({D, B, H}, x_c.options());
  at::Tensor c_n = at::empty({D, B, H}, x_c.options());

  LstmRecurrenceParams p{};
  p.x_proj = x_c.data_ptr();
  p.w_hh = w_c.data_ptr();
  p.h0 = h0_c.data_ptr();
  p.c0 = c0_c.data_ptr();
  p.lengths = lengths_d.defined() ? lengths_d.data_ptr<int64_t>() : nullptr;
  p.out = out.data_ptr();
  p.h_n = h_n.data_ptr();
  p.c_n = c_n.data_ptr();
  p.B = B;
  p.T = T;
  p.H = H;
  p.D = D;
  p.x_stride_b = x_c.stride(0);
  p.x_stride_t = x_c.stride(1);
  p.dtype = dtype == at::kHalf ? LstmDtype::kFloat16 : LstmDtype::kBFloat16;
  p.algo = static_cast<LstmAlgo>(algo);

  LstmPlan plan{};
  cudaError_t err = plan_lstm_recurrence(p, &plan);
  TORCH_CHECK(err != cudaErrorNotSupported, "lstm_recurrence: algo=", algo, " (", algo_name(algo),
              ") cannot run on this GPU: the kernel needs compute capability 8.0+ (9.0+ for clusters) and room for "
              "one group of ceil(H/32) CTAs per direction");
  TORCH_CHECK(err == cudaSuccess, "lstm_recurrence: planning the CUDA launch failed: ", cudaGetErrorString(err));
  at::Tensor scratch;
  if (plan.scratch_bytes > 0) {
    scratch = at::empty({static_cast<int64_t>(plan.scratch_bytes)}, x_c.options().dtype(at::kByte));
  }
  err = launch_lstm_recurrence(p, plan, scratch.defined() ? scratch.data_ptr() : nullptr, stream.stream());
  TORCH_CHECK(err == cudaSuccess, "lstm_recurrence CUDA launch failed: ", cudaGetErrorString(err));
  return {out, h_n, c_n};
}

}  // namespace

TORCH_LIBRARY_IMPL(crnn_fast, CUDA, m) { m.impl("lstm_recurrence", &lstm_recurrence_cuda); }

}  // namespace crnn_fast
