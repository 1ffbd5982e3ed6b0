// Device twins of the scalar helpers of csrc/cpu/ctc_beam_search.cpp, written with the same formulas and order
// of operations so that the CUDA beam search scores every prefix like the CPU op (float64 throughout). The
// lexicon trie, the n-gram key fold and the LM lookup are the CPU op's own (csrc/ctc_lm.h, host and device code).
#pragma once
#include <cstdint>

#include "../ctc_lm.h"

namespace crnn_fast {
namespace ctc_dev {

constexpr double kNegInf = -__builtin_huge_val();

// log(exp(a) + exp(b)) as max + log1p(exp(-|a - b|)): the reference's formula.
__device__ __forceinline__ double log_add(double a, double b) {
  if (isinf(a) && a < 0) return b;
  if (isinf(b) && b < 0) return a;
  const double m = a > b ? a : b;
  return m + log1p(exp(-fabs(a - b)));
}

// A bound lowered by a relative margin (upper bounds are rounded differently from exact scores).
__device__ __forceinline__ double loosen(double bound) {
  return (isinf(bound) && bound < 0) ? bound : bound - 1e-9 * fmax(1.0, fabs(bound));
}

}  // namespace ctc_dev
}  // namespace crnn_fast
