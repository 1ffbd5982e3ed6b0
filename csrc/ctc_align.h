// The most probable CTC alignment of a decoded label: the frames and confidences the beam search reports
// (crnn_fast.reference.ctc.ctc_alignment_ref, which documents the recursion and the tie rule). Host and device:
// the CPU beam search (csrc/cpu/ctc_beam_search.cpp) runs align_sequential; the CUDA kernel
// (csrc/cuda/ctc_beam_search_kernel.cu) runs the same cells with the states of a frame spread over its block, then
// the same trace, so both backends compute the same float64 values with the same tie order.
//   len valid frames, C classes, L label length, S = 2L + 1 lattice states: state s is the blank when s is
//   even and tokens[(s - 1) / 2] when odd.
// The winning predecessor of each cell is kept as a 2-bit step (0: stay on s, 1: from s - 1, 2: from s - 2),
// four states to a byte: a steps table is (len, row_bytes(L)) bytes (row 0, frame 0, is never read).
#pragma once
#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define CRNN_FAST_HD __host__ __device__
#else
#define CRNN_FAST_HD
#endif

namespace crnn_fast {
namespace ctc_align {

constexpr double kNegInf = -__builtin_huge_val();

CRNN_FAST_HD inline int64_t row_bytes(int64_t L) { return (2 * L + 1 + 3) / 4; }

CRNN_FAST_HD inline int64_t state_class(const int64_t* tokens, int64_t blank, int64_t s) {
  return (s & 1) ? tokens[s >> 1] : blank;
}

// alpha at frame 0: the path starts on the blank or on the first token.
template <typename scalar_t>
CRNN_FAST_HD inline double initial(const scalar_t* row0, const int64_t* tokens, int64_t blank, int64_t s) {
  if (s == 0) return static_cast<double>(row0[blank]);
  if (s == 1) return static_cast<double>(row0[tokens[0]]);
  return kNegInf;
}

// The cells of states 4q .. 4q + 3 (those < S) of a frame t >= 1: cur[s] = best predecessor in prev + lp[t, class].
// Predecessors are compared s, s - 1, s - 2 with strict >, so ties go to the state furthest along. Returns their
// steps packed into one byte.
template <typename scalar_t>
CRNN_FAST_HD inline uint8_t step_cells(const double* prev, double* cur, const scalar_t* row, const int64_t* tokens,
                                       int64_t blank, int64_t S, int64_t q) {
  uint8_t packed = 0;
  for (int64_t s = 4 * q; s < 4 * q + 4 && s < S; ++s) {
    double best = prev[s];
    int step = 0;
    if (s >= 1 && prev[s - 1] > best) {
      best = prev[s - 1];
      step = 1;
    }
    // A token may skip the blank before it only when it differs from the token before that blank.
    if ((s & 1) && s >= 3 && tokens[s >> 1] != tokens[(s >> 1) - 1] && prev[s - 2] > best) {
      best = prev[s - 2];
      step = 2;
    }
    cur[s] = best + static_cast<double>(row[state_class(tokens, blank, s)]);
    packed |= static_cast<uint8_t>(step << (2 * (s - 4 * q)));
  }
  return packed;
}

// From the last frame's alpha: traces the path back (ending on the final blank unless the last token is strictly
// better) and writes per token the frame it is emitted at (the first of its run) and its confidence, exp of its
// highest log-prob over its run, as float. Returns false when the label has no alignment of non-zero probability
// (never for a hypothesis the search returned: its score is finite).
template <typename scalar_t>
CRNN_FAST_HD inline bool trace(const double* last_alpha, const uint8_t* steps, const scalar_t* lp, int64_t C,
                               int64_t len, const int64_t* tokens, int64_t L, int64_t* frames, float* confidences) {
  const int64_t S = 2 * L + 1;
  int64_t s = last_alpha[S - 1] >= last_alpha[S - 2] ? S - 1 : S - 2;
  if (!(last_alpha[s] > kNegInf)) return false;
  const int64_t bytes = row_bytes(L);
  int64_t run = -1;  // the token whose run the trace is in (runs are contiguous: states never go back)
  scalar_t run_max = 0;
  for (int64_t t = len - 1; t >= 0; --t) {
    if (s & 1) {
      const int64_t k = s >> 1;
      const scalar_t v = lp[t * C + tokens[k]];
      if (k != run) {
        if (run >= 0) confidences[run] = static_cast<float>(::exp(static_cast<double>(run_max)));
        run = k;
        run_max = v;
      } else if (v > run_max) {
        run_max = v;
      }
      frames[k] = t;
    }
    if (t > 0) s -= (steps[t * bytes + (s >> 2)] >> (2 * (s & 3))) & 3;
  }
  if (run >= 0) confidences[run] = static_cast<float>(::exp(static_cast<double>(run_max)));
  return true;
}

// The whole alignment on one thread. lp: (len, C) rows; alpha_a, alpha_b: S doubles each; steps: len *
// row_bytes(L) bytes. L == 0 writes nothing.
template <typename scalar_t>
inline bool align_sequential(const scalar_t* lp, int64_t C, int64_t len, int64_t blank, const int64_t* tokens,
                             int64_t L, double* alpha_a, double* alpha_b, uint8_t* steps, int64_t* frames,
                             float* confidences) {
  if (L == 0) return true;
  if (len == 0) return false;
  const int64_t S = 2 * L + 1, bytes = row_bytes(L);
  double* prev = alpha_a;
  double* cur = alpha_b;
  for (int64_t s = 0; s < S; ++s) prev[s] = initial(lp, tokens, blank, s);
  for (int64_t t = 1; t < len; ++t) {
    for (int64_t q = 0; q < bytes; ++q) steps[t * bytes + q] = step_cells(prev, cur, lp + t * C, tokens, blank, S, q);
    double* swap = prev;
    prev = cur;
    cur = swap;
  }
  return trace(prev, steps, lp, C, len, tokens, L, frames, confidences);
}

}  // namespace ctc_align
}  // namespace crnn_fast
