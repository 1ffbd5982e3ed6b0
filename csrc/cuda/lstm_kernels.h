// Launcher of the persistent LSTM recurrence kernel (lstm_recurrence_kernel.cu). No torch headers here, so
// that the .cu compiles in seconds; checks, allocation, device guard and stream live in lstm_recurrence_cuda.cpp.
//
// Dimensions: B batch, T time steps, H hidden size, D directions (1 or 2).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace crnn_fast {

enum class LstmDtype { kFloat16, kBFloat16 };

// How the CTAs that share one (direction, batch tile) exchange h_t every step.
enum class LstmAlgo : int {
  kAuto = 0,         // kCluster on sm_90+, kCooperative before
  kCluster = 1,      // thread-block cluster: distributed shared memory + barrier.cluster (sm_90+)
  kCooperative = 2,  // cooperative launch: h_t through global memory (L2) + a per-group atomic barrier (sm_80+)
};

// The largest hidden size the kernel handles: W_hh lives in registers, H/2 of them per thread.
constexpr int64_t kLstmMaxHidden = 256;

struct LstmRecurrenceParams {
  const void* x_proj;      // (B, T, D*4H): x @ W_ih^T + b_ih + b_hh, gates i, f, g, o per direction; last dim
                           // contiguous, element strides x_stride_b, x_stride_t
  const void* w_hh;        // (D, 4H, H) contiguous
  const void* h0;          // (D, B, H) contiguous, same dtype as x_proj
  const void* c0;          // (D, B, H) contiguous, same dtype as x_proj
  const int64_t* lengths;  // (B,) on the device, each in [0, T] (values outside are clamped); nullptr: all T
  void* out;               // (B, T, D*H) contiguous out; zero where t >= lengths[b]
  void* h_n;               // (D, B, H) contiguous out
  void* c_n;               // (D, B, H) contiguous out
  int64_t B, T, H, D;
  int64_t x_stride_b, x_stride_t;
  LstmDtype dtype;
  LstmAlgo algo;
};

// Launch geometry chosen for one call, and the global scratch it needs (kCooperative only).
struct LstmPlan {
  LstmAlgo algo;             // kCluster or kCooperative, never kAuto
  int cluster_size;          // CTAs per (direction, batch tile) group: ceil(H / 32)
  int batch_tile;            // batch rows per group, a multiple of 8, at most 64
  int num_tiles;             // ceil(B / batch_tile)
  int groups_per_direction;  // concurrent groups per direction; each loops over tiles g, g + groups, ...
  int k_tiles;               // 16-wide k-tiles of the recurrent product (H padded up to 32, 64, 128 or 256)
  size_t smem_bytes;         // dynamic shared memory per CTA
  size_t scratch_bytes;      // global scratch (zero for kCluster); the launcher zeroes what must be zero
};

// Chooses the plan for `p` on the current device. Returns cudaErrorNotSupported for a shape or algo the
// kernel cannot run here (the glue checks shapes first, so this means: cluster requested before sm_90, or too
// few SMs for even one group per direction).
cudaError_t plan_lstm_recurrence(const LstmRecurrenceParams& p, LstmPlan* plan);

// Runs the whole recurrence of one layer, both directions, in one launch on `stream`. `scratch` must hold
// plan.scratch_bytes bytes (may be null when that is 0).
cudaError_t launch_lstm_recurrence(const LstmRecurrenceParams& p, const LstmPlan& plan, void* scratch,
                                   cudaStream_t stream);

}  // namespace crnn_fast
