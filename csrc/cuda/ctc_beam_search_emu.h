// Runs ctc_beam_search_kernel.cu on the CPU for tests without a GPU (tests/ops/ctc_beam_search_emu.cpp):
// a std::thread per CUDA thread, std::barrier for __syncthreads, std::atomic_ref for shared-memory atomics,
// one block at a time. Only what that kernel uses. Never part of the extension.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>  // cudaError_t, cudaStream_t (host API only)

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(x) alignas(x)

struct EmuDim {
  unsigned x = 0;
};
inline thread_local EmuDim threadIdx, blockIdx;

using std::exp;
using std::fabs;
using std::fmax;
using std::isinf;
using std::log1p;
using std::max;
using std::min;

namespace emu {
constexpr size_t kSmemBytes = 256 * 1024;
inline std::barrier<>* g_barrier = nullptr;
inline std::atomic<int> g_or{0};
inline int g_threads = 0;
inline double g_warp[1024];

inline unsigned char* dynamic_smem() {
  alignas(16) static unsigned char buf[kSmemBytes];
  return buf;
}

inline void sync() { g_barrier->arrive_and_wait(); }

inline int sync_or(int pred) {
  sync();
  if (pred) g_or.fetch_or(1);
  sync();
  const int r = g_or.load();
  sync();
  if (threadIdx.x == 0) g_or.store(0);
  sync();
  return r;
}

// The max over the calling thread's warp (every thread of the block calls it).
inline double warp_max(double v) {
  sync();
  g_warp[threadIdx.x] = v;
  sync();
  const unsigned w0 = threadIdx.x / 32 * 32;
  double r = g_warp[w0];
  for (unsigned i = w0 + 1; i < w0 + 32 && i < static_cast<unsigned>(g_threads); ++i) r = std::fmax(r, g_warp[i]);
  sync();
  return r;
}

inline void run_grid(int64_t blocks, int threads, const std::function<void()>& fn) {
  g_threads = threads;
  for (int64_t b = 0; b < blocks; ++b) {
    std::barrier<> bar(threads);
    g_barrier = &bar;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        threadIdx.x = static_cast<unsigned>(t);
        blockIdx.x = static_cast<unsigned>(b);
        fn();
      });
    }
    for (auto& th : pool) th.join();
  }
}
}  // namespace emu

inline void __syncthreads() { emu::sync(); }
inline int __syncthreads_or(int pred) { return emu::sync_or(pred); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline int atomicExch(int* p, int v) { return std::atomic_ref<int>(*p).exchange(v); }
inline long long __double_as_longlong(double d) {
  long long r;
  std::memcpy(&r, &d, sizeof r);
  return r;
}
