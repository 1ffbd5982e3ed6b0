// Launchers of the CUDA kernels. This header includes no torch headers so that the .cu files compile in
// seconds; the torch glue (checks, streams, allocation) lives in the *_cuda.cpp files.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace crnn_fast {

enum class FloatType { kFloat32, kFloat64, kFloat16, kBFloat16 };

struct CtcGreedyParams {
  const void* log_probs;   // (B, T, C) contiguous, FloatType `dtype`
  const int64_t* lengths;  // (B,)
  int64_t B, T, C, blank;
  FloatType dtype;
  int64_t* tokens;         // (B, T) out, -1 padded
  int64_t* token_lengths;  // (B,) out
  int64_t* token_frames;   // (B, T) out, -1 padded
  void* token_logprobs;    // (B, T) out, float64 for float64 input else float32
  void* path_logprob;      // (B,) out, same type as token_logprobs
  int32_t* best_class;     // (B, T) scratch
  void* best_logprob;      // (B, T) scratch, same type as token_logprobs
  int32_t* bad_input;      // (B,) out: bit 0 where a valid frame held NaN or +inf, bit 1 where one was -inf for
                           // every class
};

cudaError_t launch_ctc_greedy(const CtcGreedyParams& p, cudaStream_t stream);

}  // namespace crnn_fast
