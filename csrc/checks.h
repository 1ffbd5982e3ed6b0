// Input checks shared by the host code of every op: each message names the argument.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#define CHECK_DIM(x, d) TORCH_CHECK((x).dim() == (d), #x " must have " #d " dimensions, got ", (x).dim())
#define CHECK_DEVICE(x, dev) \
  TORCH_CHECK((x).device() == (dev), #x " must be on ", (dev), ", got ", (x).device())
#define CHECK_DTYPE(x, dt) TORCH_CHECK((x).scalar_type() == (dt), #x " must be ", (dt), ", got ", (x).scalar_type())
#define CHECK_FLOATING(x)                                                                               \
  TORCH_CHECK((x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble ||                    \
                  (x).scalar_type() == at::kHalf || (x).scalar_type() == at::kBFloat16,                 \
              #x " must be float16, bfloat16, float32 or float64, got ", (x).scalar_type())

namespace crnn_fast {

// log_probs (B, T, C) floating with B, C > 0, lengths (B,) int64 on its device, blank a class: what every CTC op
// checks first. The values of lengths are checked where they are read (on the host, or by the CUDA kernels).
inline void check_ctc_inputs(const at::Tensor& log_probs, const at::Tensor& lengths, int64_t blank) {
  CHECK_DIM(log_probs, 3);
  CHECK_FLOATING(log_probs);
  CHECK_DIM(lengths, 1);
  CHECK_DTYPE(lengths, at::kLong);
  CHECK_DEVICE(lengths, log_probs.device());
  const int64_t B = log_probs.size(0), C = log_probs.size(2);
  TORCH_CHECK(B > 0, "log_probs must hold at least one sequence (B > 0)");
  TORCH_CHECK(C > 0, "log_probs must have at least one class (C > 0)");
  TORCH_CHECK(C < (int64_t{1} << 31), "log_probs has too many classes (C=", C, ")");
  TORCH_CHECK(lengths.size(0) == B, "lengths must have B=", B, " entries, got ", lengths.size(0));
  TORCH_CHECK(blank >= 0 && blank < C, "blank must be in [0, C=", C, "), got ", blank);
}

}  // namespace crnn_fast
