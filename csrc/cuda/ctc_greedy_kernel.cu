// Greedy CTC decoding on the GPU: one thread block per sequence. Each warp takes the argmax of whole frames
// (lanes stride over C), then one thread merges repeats and drops blanks, so the whole batch is one launch.
//   B batch, T frames, C classes (blank included).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>

#include "kernels.h"

namespace crnn_fast {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <typename T>
__device__ __forceinline__ float to_acc(T v, float) { return static_cast<float>(v); }
__device__ __forceinline__ float to_acc(__half v, float) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v, float) { return __bfloat162float(v); }
__device__ __forceinline__ double to_acc(double v, double) { return v; }

template <typename scalar_t, typename acc_t>
__global__ void ctc_greedy_kernel(const scalar_t* __restrict__ log_probs, const int64_t* __restrict__ lengths,
                                  int64_t T, int64_t C, int64_t blank, int64_t* __restrict__ tokens,
                                  int64_t* __restrict__ token_lengths, int64_t* __restrict__ token_frames,
                                  acc_t* __restrict__ token_logprobs, acc_t* __restrict__ path_logprob,
                                  int32_t* __restrict__ best_class, acc_t* __restrict__ best_logprob,
                                  int32_t* __restrict__ bad_input) {
  const int64_t b = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t len = lengths[b];
  __shared__ int bad;
  __shared__ int64_t n_tokens;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();

  for (int64_t t = warp; t < len; t += kWarps) {
    const scalar_t* row = log_probs + (b * T + t) * C;
    acc_t best_v = -INFINITY;
    int best = C;  // past every class: any real class wins a tie against it
    bool finite = true;
    for (int64_t c = lane; c < C; c += 32) {
      const acc_t v = to_acc(row[c], acc_t(0));
      finite &= !isnan(v) && v != INFINITY;
      if (v > best_v || (v == best_v && c < best)) {
        best_v = v;
        best = static_cast<int>(c);
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {  // ties go to the lowest class, as torch.argmax
      const acc_t other_v = __shfl_down_sync(0xffffffffu, best_v, offset);
      const int other = __shfl_down_sync(0xffffffffu, best, offset);
      if (other_v > best_v || (other_v == best_v && other < best)) {
        best_v = other_v;
        best = other;
      }
    }
    if (!__all_sync(0xffffffffu, finite) && lane == 0) atomicOr(&bad, 1);
    if (lane == 0 && best_v == -INFINITY) atomicOr(&bad, 2);  // -inf for every class (no NaN: see above)
    if (lane == 0) {
      best_class[b * T + t] = best;
      best_logprob[b * T + t] = best_v;
    }
  }
  __syncthreads();

  if (threadIdx.x == 0) {
    int64_t n = 0, prev = -1;
    acc_t path = 0;
    for (int64_t t = 0; t < len; ++t) {
      const int64_t k = best_class[b * T + t];
      const acc_t v = best_logprob[b * T + t];
      path += v;
      if (k != blank) {
        if (k != prev) {
          tokens[b * T + n] = k;
          token_frames[b * T + n] = t;
          token_logprobs[b * T + n] = v;
          ++n;
        } else if (v > token_logprobs[b * T + n - 1]) {
          token_logprobs[b * T + n - 1] = v;
        }
      }
      prev = k;
    }
    token_lengths[b] = n;
    path_logprob[b] = path;
    bad_input[b] = bad;
    n_tokens = n;
  }
  __syncthreads();
  for (int64_t k = n_tokens + threadIdx.x; k < T; k += kThreads) {
    tokens[b * T + k] = -1;
    token_frames[b * T + k] = -1;
    token_logprobs[b * T + k] = 0;
  }
}

template <typename scalar_t, typename acc_t>
cudaError_t launch(const CtcGreedyParams& p, cudaStream_t stream) {
  if (p.B == 0) return cudaSuccess;
  ctc_greedy_kernel<scalar_t, acc_t><<<static_cast<unsigned>(p.B), kThreads, 0, stream>>>(
      static_cast<const scalar_t*>(p.log_probs), p.lengths, p.T, p.C, p.blank, p.tokens, p.token_lengths,
      p.token_frames, static_cast<acc_t*>(p.token_logprobs), static_cast<acc_t*>(p.path_logprob), p.best_class,
      static_cast<acc_t*>(p.best_logprob), p.bad_input);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_ctc_greedy(const CtcGreedyParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case FloatType::kFloat32: return launch<float, float>(p, stream);
    case FloatType::kFloat64: return launch<double, double>(p, stream);
    case FloatType::kFloat16: return launch<__half, float>(p, stream);
    case FloatType::kBFloat16: return launch<__nv_bfloat16, float>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace crnn_fast
