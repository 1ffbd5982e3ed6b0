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
