// Persistent LSTM recurrence (inference): every step of one layer, both directions, in one launch.
//
// Dimension glossary
//   B   batch                       T   time steps                  H   hidden size (1..256)
//   D   directions (1 or 2)         BT  batch rows per tile (8..64, multiple of 8)
//   CS  CTAs per group = ceil(H / 32): a thread-block cluster on sm_90, a cooperative group of CTAs before
//   U   hidden units per CTA = 32   KT  16-wide k-tiles of the recurrent product (H padded to 32/64/128/256)
//   Hp  H rounded up to 8: the width of the h exchange (16-byte vectors)
//   s   step index 0..S-1, S = longest sequence of the tile; t = s (forward) or S-1-s (reverse)
//
// What the kernel computes (the input projection x @ W_ih^T + b_ih + b_hh of all steps is one GEMM before it):
//   gates = x_proj[:, t, d] + h_{t-1} @ W_hh[d]^T           (B, 4H), gate order i, f, g, o (torch.nn.LSTM)
//   c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g);  h_t = sigmoid(o) * tanh(c_t)
//   rows with t >= lengths[b] keep (h, c) and output 0 (PackedSequence semantics; the reverse direction thereby
//   starts at lengths[b] - 1).
//
// Design, and why
// * The step is latency-bound: (BT x 256) @ (256 x 1024) is tiny, but W_hh[d] is 512 KB in fp16 -- too big for
//   one SM. So one GROUP of CS CTAs (8 for H = 256) owns one (direction, batch tile). CTA `rank` owns hidden units
//   [32 rank, 32 rank + 32) and the 4 gate rows of each: 128 rows x H of W_hh, kept in REGISTERS for the whole
//   kernel as mma.sync A fragments (H/2 registers per thread: 128 for H = 256). W_hh is read from memory once.
// * Tensor cores, "swapped" product: gates^T (128 x BT) = W_slice (128 x H) @ h^T (H x BT) with mma.sync
//   m16n8k16 (fp16/bf16 in, fp32 accumulate; the same code runs on sm_80 and sm_90). The weight is the M side,
//   so a batch of 1 wastes only the 8-wide N tile. A warp owns 8 units: m-tile 0 holds rows (i, f) of those 8
//   units, m-tile 1 rows (g, o), so the accumulator layout hands each lane all four gates of 1 unit x 2 batch
//   rows -- gate math, fp32 cell state and h_t are fused right after the MMAs, with no shuffle.
//   4 unit-warps x 2 batch-warps = 8 warps; the batch-warps deal the BT/8 n-tiles round robin. Each k-tile pair
//   is one ldmatrix.x4 of h from shared memory (rows padded by 16 B: conflict-free); 4 partial accumulators per
//   m-tile keep the dependent MMA chains short (latency, not throughput, limits small batches).
// * Exchange on sm_90 (clusters): every CTA needs all of h_{t-1}. Each warp gathers its 8 units x 8 rows of h_t
//   (16 B per row) and pushes them with st.async into the h buffer of every CTA of the cluster (distributed
//   shared memory); each st.async completes 16 bytes of a transaction on the destination's mbarrier, which its
//   owner armed with expect_tx(BT * Hp * 2) for that fill. A CTA waits on its own mbarrier, nothing else: no
//   cluster-wide barrier per step, and no fence -- a cluster-scope release (barrier.cluster.arrive.release or
//   fence.acq_rel.cluster) compiles to MEMBAR.ALL.GPU, which would wait for this thread's in-flight global stores
//   every step, while st.async carries its own release and compiles to a bare STAS.
//   h is DOUBLE BUFFERED (read buf[s&1], write buf[(s+1)&1]), one mbarrier per buffer. Why nothing overwrites a
//   buffer still being read, and why no fill runs ahead of its phase: a CTA writes a peer's buf[(s+1)&1] at
//   step s only after it received all of h_s, which includes that peer's own slice of step s-1, which the peer
//   sent only after it finished step s-1 -- the last read of that buffer -- and after its thread 0 (always a
//   sender) had consumed the buffer's previous phase. A __syncthreads per step keeps every thread of a CTA
//   within one step of the others (and publishes the x_proj copies below).
//   Before sm_90 (or with algo = cooperative) the same kernel swaps the exchange: h_t slices go to a global
//   (L2) double buffer, the CS CTAs of a group meet at an atomic-counter barrier (release/acquire, co-residency
//   guaranteed by a cooperative launch), then each copies the whole h_t back into shared memory.
// * x_proj is read with cp.async (16 B, L1 bypassed) two steps ahead into a 3-stage shared-memory ring, so its
//   latency hides behind two steps; copies are dealt to the batch-warps that have no n-tile first (BT = 8).
// * Persistent over batch tiles: a launch has D x G groups (G chosen so that all are resident); group (d, g)
//   runs tiles g, g + G, ... keeping W_hh[d] in registers. Each tile starts with one cluster barrier so that no
//   peer writes into a buffer this CTA still reads for the previous tile's h_n.
// * Lengths: a tile runs S = max(lengths) steps; steps t >= S are zero-filled up front, per-row masks do the
//   rest. Cell state is fp32 in shared memory (each entry private to one thread); h is kept in the input dtype
//   -- what the next step's MMA consumes, as in cuDNN.
// * Odd H: K is zero-padded to 16 KT (zero weights, zero h columns). Units in [H, Hp) have zero weights, zero
//   x_proj and zero initial state, so their h stays 0 (finite in any case) and only ever meets zero weight
//   columns; they are never written out, and the 16-byte exchange carries them with no special case.
//   Outputs use 16-byte stores when H % 8 == 0, x_proj 16-byte copies when its rows are aligned too.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "lstm_kernels.h"

namespace crnn_fast {
namespace {

constexpr int kUnitsPerWarp = 8;  // the 8 row groups of an m16n8k16 accumulator fragment
constexpr int kUnitWarps = 4;     // warps along the hidden units of one CTA
constexpr int kUnitsPerCta = kUnitsPerWarp * kUnitWarps;  // U = 32
constexpr int kBatchWarps = 2;    // warps along the batch; n-tiles are dealt round robin
constexpr int kWarps = kUnitWarps * kBatchWarps;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxClusterSize = 8;  // portable cluster size = ceil(kLstmMaxHidden / U)
constexpr int kMaxBatchTile = 64;
constexpr int kStages = 3;                    // x_proj ring: step s in use, s+1 landed, s+2 in flight
constexpr int kXsRow = 4 * kUnitsPerCta + 8;  // 4 gates x 32 units + 16 B: the 4 rows one load touches hit
                                              // distinct banks
constexpr int kCRow = kUnitsPerCta + 4;       // fp32 cell row + 4 words, same reason
constexpr int kPartials = 4;                  // partial accumulators per m-tile (shorter MMA chains)

static_assert(kMaxClusterSize * kUnitsPerCta == kLstmMaxHidden, "a cluster must cover the largest H");

struct SmemLayout {
  int h_row;  // elements per h row: 16 KT + 8 (16 B pad: conflict-free ldmatrix)
  size_t mbar_off, h_off, xs_off, stage_off, c_off, len_off, total;
};

__host__ __device__ inline SmemLayout smem_layout(int k_tiles, int bt) {
  SmemLayout l{};
  l.h_row = 16 * k_tiles + 8;
  size_t off = 0;
  l.mbar_off = off;  // [2] uint64 mbarriers, one per h buffer (cluster exchange)
  off += 16;
  l.h_off = off;  // [2][BT][h_row] input dtype: h_{t-1} (read) and h_t (written by every CTA of the group)
  off += size_t(2) * bt * l.h_row * 2;
  l.xs_off = off;  // [kStages][BT][kXsRow] input dtype: this CTA's slice of x_proj per step
  off += size_t(kStages) * bt * kXsRow * 2;
  l.stage_off = off;  // [kWarps][8 rows][8 units] input dtype: h_t of one n-tile, gathered for 16 B stores
  off += size_t(kWarps) * 64 * 2;
  l.c_off = off;  // [BT][kCRow] fp32 cell state of this CTA's units
  off += size_t(bt) * kCRow * 4;
  l.len_off = off;  // [BT] int lengths of the tile's rows (0 for rows past B)
  off += size_t(bt) * 4;
  l.total = (off + 15) / 16 * 16;
  return l;
}

struct KernelArgs {
  const void* x;  // x_proj (B, T, D*4H), strides sB, sT, 1
  const void* w;  // (D, 4H, H)
  const void* h0;
  const void* c0;
  const int64_t* lengths;
  void* out;
  void* hn;
  void* cn;
  void* gbuf;              // cooperative: (D*G, 2, BT, Hp) h exchange
  unsigned int* counters;  // cooperative: (D*G,) barrier arrivals, zeroed before the launch
  int B, T, H, D;
  long long sB, sT;
  int cs, groups, bt, num_tiles;
  int vec_x;    // x_proj rows 16-byte aligned and H % 8 == 0: 16-byte cp.async
  int vec_out;  // H % 8 == 0: 16-byte output stores
};

// ---------------------------------------------------------------------------------------------------------
// dtype helpers

template <typename T>
struct Dt;
template <>
struct Dt<__half> {
  static __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_f(float v) { return __float2half_rn(v); }
  static __device__ __forceinline__ unsigned short bits(__half v) { return __half_as_ushort(v); }
  static __device__ __forceinline__ __half from_bits(unsigned short v) { return __ushort_as_half(v); }
};
template <>
struct Dt<__nv_bfloat16> {
  static __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
  static __device__ __forceinline__ unsigned short bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_bits(unsigned short v) { return __ushort_as_bfloat16(v); }
};

template <typename T>
__device__ __forceinline__ T zero_of() {
  return Dt<T>::from_bits(0);
}

// ---------------------------------------------------------------------------------------------------------
// PTX wrappers

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// volatile: the h buffer is written by other CTAs behind the compiler's back; the waits clobber memory.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  // src_bytes = 0 zero-fills the 16 bytes (rows past B, units past H) without reading.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#ifdef CRNN_FAST_LSTM_FAST_TANH
// tanh.approx.f32 (max rel. error 2^-11, about one fp16 ulp): 1 MUFU op instead of 2 per activation.
__device__ __forceinline__ float tanh_f(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float sigmoid_f(float x) { return fmaf(0.5f, tanh_f(0.5f * x), 0.5f); }
#else
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float rcp_approx(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// ex2 + rcp (rel. error ~2^-22): saturates cleanly (exp -> inf gives 0, exp -> 0 gives 1), NaN propagates.
__device__ __forceinline__ float sigmoid_f(float x) { return rcp_approx(1.0f + ex2_approx(-1.4426950408889634f * x)); }
__device__ __forceinline__ float tanh_f(float x) { return fmaf(2.0f, sigmoid_f(2.0f * x), -1.0f); }
#endif

// Cluster primitives exist from sm_90 on; the cluster instantiations trap before that and are never launched.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define CRNN_FAST_SM90_ONLY(...) __trap()
#else
#define CRNN_FAST_SM90_ONLY(...) __VA_ARGS__
#endif

__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r = 0;
  CRNN_FAST_SM90_ONLY(asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r)));
  return r;
}
__device__ __forceinline__ uint32_t cluster_id_x() {
  uint32_t r = 0;
  CRNN_FAST_SM90_ONLY(asm volatile("mov.u32 %0, %%clusterid.x;\n" : "=r"(r)));
  return r;
}
// Full cluster barrier with release/acquire: used once per tile and at exit, never per step.
__device__ __forceinline__ void cluster_sync() {
  CRNN_FAST_SM90_ONLY(asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
                      asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory"));
}
// Address of the same shared-memory location in CTA `rank` of this cluster.
__device__ __forceinline__ uint32_t map_to_rank(uint32_t addr, uint32_t rank) {
  uint32_t r = 0;
  CRNN_FAST_SM90_ONLY(asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank)));
  return r;
}
__device__ __forceinline__ void mbar_init(uint32_t mbar, uint32_t count) {
  CRNN_FAST_SM90_ONLY(asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mbar), "r"(count) : "memory"));
}
// Makes the initialised mbarriers visible to the cluster (peers complete transactions on them).
__device__ __forceinline__ void fence_mbar_init() {
  CRNN_FAST_SM90_ONLY(asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"));
}
// The owner's single arrival of a phase, announcing the bytes the peers will deliver into it.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t mbar, uint32_t bytes) {
  CRNN_FAST_SM90_ONLY(asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(mbar),
                                   "r"(bytes)
                                   : "memory"));
}
// A wait longer than this is a deadlock (a peer waits one step at most): trap, so the launch fails with an error
// instead of hanging the GPU. Read only after a first failed poll, so the fast path pays nothing.
constexpr unsigned long long kDeadlockNs = 20ull * 1000 * 1000 * 1000;
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

__device__ __forceinline__ bool mbar_try_wait(uint32_t mbar, uint32_t parity) {
  uint32_t done = 0;
  CRNN_FAST_SM90_ONLY(asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\n"
      " selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(mbar), "r"(parity)
      : "memory"));
  return done != 0;
}
// Waits until the phase with this parity has completed; acquire at cluster scope pairs with the release of the
// peers' st.async complete_tx, so their data is visible afterwards.
__device__ __forceinline__ void mbar_wait(uint32_t mbar, uint32_t parity) {
  if (mbar_try_wait(mbar, parity)) return;
  const unsigned long long start = global_ns();
  while (!mbar_try_wait(mbar, parity)) {
    if (global_ns() - start > kDeadlockNs) __trap();
  }
}
// 16 bytes into a peer's shared memory, completing 16 bytes of the transaction on the peer's mbarrier.
__device__ __forceinline__ void st_async_v4(uint32_t addr, uint4 v, uint32_t remote_mbar) {
  CRNN_FAST_SM90_ONLY(asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(addr),
      "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "r"(remote_mbar)
      : "memory"));
}

// Barrier of the CS co-resident CTAs of one cooperative group: a monotonically growing arrival counter.
// __syncthreads + fence before the add, acquire-load + fence + __syncthreads after: the pattern of
// cooperative_groups' grid sync, so every thread's global stores before it are seen by every thread after it.
__device__ __forceinline__ void group_barrier(unsigned int* counter, unsigned int target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1u);
    const unsigned long long start = global_ns();
    while (true) {
      unsigned int seen;
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(seen) : "l"(counter) : "memory");
      if (seen >= target) break;
      if (global_ns() - start > kDeadlockNs) __trap();  // see kDeadlockNs
    }
    __threadfence();
  }
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------------------
// the kernel

template <typename T, int KT, bool kCluster>
__device__ __forceinline__ void lstm_recurrence_body(const KernelArgs& a) {
  static_assert(KT % 2 == 0, "k-tiles are consumed in pairs (ldmatrix.x4)");
  extern __shared__ __align__(16) unsigned char smem[];
  const int B = a.B, Tn = a.T, H = a.H, D = a.D, BT = a.bt, CS = a.cs;
  const int Hp = (H + 7) / 8 * 8;
  const SmemLayout L = smem_layout(KT, BT);
  const int h_row = L.h_row;
  T* const hbuf = reinterpret_cast<T*>(smem + L.h_off);
  T* const xs = reinterpret_cast<T*>(smem + L.xs_off);
  float* const cbuf = reinterpret_cast<float*>(smem + L.c_off);
  int* const lens = reinterpret_cast<int*>(smem + L.len_off);
  const uint32_t mbar = smem_u32(smem + L.mbar_off);  // mbarrier of h buffer b at mbar + 8 b

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int uw = warp % kUnitWarps;  // unit-warp: units [8 uw, 8 uw + 8) of this CTA
  const int bw = warp / kUnitWarps;  // batch-warp: n-tiles bw, bw + kBatchWarps, ...
  const int gq = lane >> 2;          // fragment row group -> unit
  const int tq = lane & 3;           // fragment thread-in-group -> batch column pair
  T* const stage = reinterpret_cast<T*>(smem + L.stage_off) + warp * 64;

  int rank, group;
  if constexpr (kCluster) {
    rank = static_cast<int>(cluster_ctarank());
    group = static_cast<int>(cluster_id_x());
  } else {
    rank = blockIdx.x % CS;
    group = blockIdx.x / CS;
  }
  const int d = group / a.groups;   // direction: 0 forward, 1 reverse
  const int gi = group % a.groups;  // group index within the direction
  const int u_local = uw * kUnitsPerWarp + gq;              // this lane's unit within the CTA
  const int u = rank * kUnitsPerCta + u_local;              // ... and within H
  const int u0 = rank * kUnitsPerCta + uw * kUnitsPerWarp;  // first unit of this warp
  const bool sender = u0 < H;  // warps whose 8 units are all padding compute and send nothing

  const T* const x = static_cast<const T*>(a.x);
  const T* const h0 = static_cast<const T*>(a.h0);
  const T* const c0 = static_cast<const T*>(a.c0);
  T* const out = static_cast<T*>(a.out);
  T* const hn = static_cast<T*>(a.hn);
  T* const cn = static_cast<T*>(a.cn);

  // W_hh rows of this lane's fragments, resident for the whole kernel. A fragment register r of m-tile mt,
  // k-tile kt holds (row gq + 8 (r & 1), cols kt*16 + 2 tq + 8 (r >> 1) + {0, 1}); row gq of m-tile mt is gate
  // 2 mt, row gq + 8 gate 2 mt + 1, both of unit u. Zero past H (rows and columns).
  uint32_t wa[2][KT][4];
  {
    const T* const W = static_cast<const T*>(a.w) + static_cast<size_t>(d) * 4 * H * H;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int kt = 0; kt < KT; ++kt) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int q = 2 * mt + (r & 1);
          const int col = kt * 16 + 2 * tq + 8 * (r >> 1);
          const T* row = W + static_cast<size_t>(q * H + u) * H;
          const bool ok = u < H;
          const unsigned short lo = ok && col < H ? Dt<T>::bits(row[col]) : 0;
          const unsigned short hi = ok && col + 1 < H ? Dt<T>::bits(row[col + 1]) : 0;
          wa[mt][kt][r] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
        }
      }
    }
  }

  // Both h buffers start at zero: the K padding columns must read as 0 forever.
  {
    uint4* p = reinterpret_cast<uint4*>(hbuf);
    const int n = static_cast<int>(size_t(2) * BT * h_row * 2 / 16);
    for (int i = tid; i < n; i += kThreads) p[i] = make_uint4(0, 0, 0, 0);
  }

  // Exchange targets of this lane: row (lane & 7) of the staged 8 x 8 tile goes to ranks rs and rs + 4.
  const int rrow = lane & 7, rs = lane >> 3;
  uint32_t remote_h[2] = {0, 0}, remote_mbar[2] = {0, 0};
  const uint32_t tx_bytes = static_cast<uint32_t>(BT * Hp * 2);  // one fill of one h buffer, all peers together
  if constexpr (kCluster) {
    if (tid == 0) {
      mbar_init(mbar, 1);
      mbar_init(mbar + 8, 1);
      fence_mbar_init();
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (rs + 4 * j < CS) {
        remote_h[j] = map_to_rank(smem_u32(hbuf), static_cast<uint32_t>(rs + 4 * j));
        remote_mbar[j] = map_to_rank(mbar, static_cast<uint32_t>(rs + 4 * j));
      }
    }
  }
  uint32_t phase = 0;  // bit b: parity of the next phase of buffer b's mbarrier to wait for
  auto wait_h = [&](int b) {
    mbar_wait(mbar + 8 * b, (phase >> b) & 1u);
    phase ^= 1u << b;
  };
  T* const gbuf = kCluster ? nullptr : static_cast<T*>(a.gbuf) + static_cast<size_t>(group) * 2 * BT * Hp;
  unsigned int* const counter = kCluster ? nullptr : a.counters + group;
  unsigned int epoch = 0;
  // x_proj copies start with the threads of batch-warp 1: with one n-tile (BT = 8) those warps are idle.
  const int copy_tid = (tid + kThreads / 2) % kThreads;

  for (int tile = gi; tile < a.num_tiles; tile += a.groups) {
    const int b_base = tile * BT;
    __syncthreads();  // the previous tile's h_n / c_n reads (and the zeroing above) are done

    for (int i = tid; i < BT; i += kThreads) {
      const int b = b_base + i;
      int len = 0;
      if (b < B) {
        const long long l = a.lengths ? a.lengths[b] : Tn;
        len = static_cast<int>(l < 0 ? 0 : (l > Tn ? Tn : l));  // the host checks; never index out of range
      }
      lens[i] = len;
    }
    for (int i = tid; i < BT * H; i += kThreads) {  // h_0 of the whole tile into buffer 0
      const int bl = i / H, k = i - bl * H, b = b_base + bl;
      hbuf[bl * h_row + k] = b < B ? h0[(static_cast<size_t>(d) * B + b) * H + k] : zero_of<T>();
    }
    for (int i = tid; i < BT * kUnitsPerCta; i += kThreads) {  // c_0 of this CTA's units
      const int bl = i / kUnitsPerCta, ul = i % kUnitsPerCta, b = b_base + bl, uu = rank * kUnitsPerCta + ul;
      cbuf[bl * kCRow + ul] = b < B && uu < H ? Dt<T>::to_f(c0[(static_cast<size_t>(d) * B + b) * H + uu]) : 0.0f;
    }
    __syncthreads();
    int S = 0;
    for (int i = 0; i < BT; ++i) S = max(S, lens[i]);

    // Steps t >= S are never visited: their outputs are zero.
    if (S < Tn) {
      const int per_t = BT * kUnitsPerCta;
      const long long n = static_cast<long long>(Tn - S) * per_t;
      for (long long i = tid; i < n; i += kThreads) {
        const int t = S + static_cast<int>(i / per_t), r = static_cast<int>(i % per_t);
        const int bl = r / kUnitsPerCta, uu = rank * kUnitsPerCta + r % kUnitsPerCta, b = b_base + bl;
        if (b < B && uu < H) out[((static_cast<size_t>(b) * Tn + t) * D + d) * H + uu] = zero_of<T>();
      }
    }

    // Copies this CTA's x_proj slice of step s into ring slot s % kStages (always commits a group, maybe empty).
    auto issue_xproj = [&](int s) {
      if (s < S) {
        const int t = d == 0 ? s : S - 1 - s;
        T* dst = xs + (s % kStages) * BT * kXsRow;
        if (a.vec_x) {
          for (int c = copy_tid; c < BT * 16; c += kThreads) {  // per row 4 gates x 4 chunks of 8 units
            const int bl = c >> 4, q = (c >> 2) & 3, ch = c & 3;
            const int b = b_base + bl, uu = rank * kUnitsPerCta + ch * 8;
            const bool ok = b < B && uu < H;
            const T* src = ok ? x + b * a.sB + t * a.sT + static_cast<long long>(d * 4 + q) * H + uu : x;
            cp_async16(smem_u32(dst + bl * kXsRow + q * kUnitsPerCta + ch * 8), src, ok ? 16 : 0);
          }
        } else {
          for (int c = copy_tid; c < BT * 4 * kUnitsPerCta; c += kThreads) {
            const int bl = c / (4 * kUnitsPerCta), q = (c / kUnitsPerCta) & 3, ul = c % kUnitsPerCta;
            const int b = b_base + bl, uu = rank * kUnitsPerCta + ul;
            dst[bl * kXsRow + q * kUnitsPerCta + ul] =
                b < B && uu < H ? x[b * a.sB + t * a.sT + static_cast<long long>(d * 4 + q) * H + uu] : zero_of<T>();
          }
        }
      }
      cp_async_commit();
    };

    issue_xproj(0);
    issue_xproj(1);
    cp_async_wait<1>();
    // Every CTA of the group initialised (mbarriers too) and done with the previous tile before remote writes.
    if constexpr (kCluster) {
      cluster_sync();
    } else {
      group_barrier(counter, ++epoch * static_cast<unsigned int>(CS));
    }

    for (int s = 0; s < S; ++s) {
      const int cur = s & 1, nxt = cur ^ 1;
      const int t = d == 0 ? s : S - 1 - s;
      issue_xproj(s + 2);  // slot (s+2) % 3 was last read at step s-1, before the __syncthreads that ended it
      if constexpr (kCluster) {
        if (s > 0) wait_h(cur);  // h_{s} of every peer has landed here
        // Arm the fill of buffer nxt that this step's senders deliver. Its previous phase was consumed by this
        // thread at step s-1; peers' bytes arriving before the arm only make the tx-count transiently negative.
        if (tid == 0) mbar_arrive_expect_tx(mbar + 8 * nxt, tx_bytes);
      }
      const T* const hcur = hbuf + cur * BT * h_row;
      const T* const xcur = xs + (s % kStages) * BT * kXsRow;
      const uint32_t hcur_addr = smem_u32(hcur);

      for (int nt = bw; sender && nt < BT / 8; nt += kBatchWarps) {
        // gates^T of (this warp's 8 units x 4 gates) x (8 batch rows): 2 m-tiles, KT k-tiles.
        float acc[kPartials][2][4];
#pragma unroll
        for (int p = 0; p < kPartials; ++p)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[p][mt][r] = 0.0f;
        // ldmatrix.x4: lanes 0-7 address rows for k 0-7 of k-tile kt, 8-15 k 8-15, 16-31 the same for kt + 1.
        const uint32_t b_addr = hcur_addr + static_cast<uint32_t>(((nt * 8 + rrow) * h_row + rs * 8) * 2);
#pragma unroll
        for (int kt = 0; kt < KT; kt += 2) {
          uint32_t bf[4];
          ldmatrix_x4(bf, b_addr + kt * 32);
          mma_16816<T>(acc[kt % kPartials][0], wa[0][kt], bf[0], bf[1]);
          mma_16816<T>(acc[kt % kPartials][1], wa[1][kt], bf[0], bf[1]);
          mma_16816<T>(acc[(kt + 1) % kPartials][0], wa[0][kt + 1], bf[2], bf[3]);
          mma_16816<T>(acc[(kt + 1) % kPartials][1], wa[1][kt + 1], bf[2], bf[3]);
        }
        // Accumulator (mt, r): row gq + 8 (r >> 1) -> gate 2 mt + (r >> 1) of unit u; column 2 tq + (r & 1).
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          float gate[4];
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            float v = 0.0f;
#pragma unroll
            for (int p = 0; p < kPartials; ++p) v += acc[p][q >> 1][2 * (q & 1) + j];
            gate[q] = v;
          }
          const int bl = nt * 8 + 2 * tq + j;
          const T* xr = xcur + bl * kXsRow + u_local;
          const float gi_ = gate[0] + Dt<T>::to_f(xr[0]);
          const float gf_ = gate[1] + Dt<T>::to_f(xr[kUnitsPerCta]);
          const float gg_ = gate[2] + Dt<T>::to_f(xr[2 * kUnitsPerCta]);
          const float go_ = gate[3] + Dt<T>::to_f(xr[3 * kUnitsPerCta]);
          float* const cp = cbuf + bl * kCRow + u_local;
          const float c_new = fmaf(sigmoid_f(gf_), *cp, sigmoid_f(gi_) * tanh_f(gg_));
          const float h_new = sigmoid_f(go_) * tanh_f(c_new);
          T hv;
          if (t < lens[bl]) {
            *cp = c_new;
            hv = Dt<T>::from_f(h_new);
          } else {
            hv = hcur[bl * h_row + u];  // masked row keeps h (u < 32 CS <= 16 KT: in bounds even past H)
          }
          stage[(2 * tq + j) * 8 + gq] = hv;
        }
        __syncwarp();

        // Row rrow of the staged 8 x 8 tile (16 B): to every CTA's next h buffer, and to the output.
        const uint4 v = *reinterpret_cast<const uint4*>(stage + rrow * 8);
        const int bl = nt * 8 + rrow, b = b_base + bl;
        if constexpr (kCluster) {
          const uint32_t off = static_cast<uint32_t>(((nxt * BT + bl) * h_row + u0) * 2);
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            if (rs + 4 * j < CS) st_async_v4(remote_h[j] + off, v, remote_mbar[j] + 8 * nxt);
          }
        } else if (rs == 1) {
          *reinterpret_cast<uint4*>(gbuf + (static_cast<size_t>(nxt) * BT + bl) * Hp + u0) = v;
        }
        if (rs == 0 && b < B) {
          const bool valid = t < lens[bl];
          T* const o = out + ((static_cast<size_t>(b) * Tn + t) * D + d) * H + u0;
          if (a.vec_out) {
            *reinterpret_cast<uint4*>(o) = valid ? v : make_uint4(0, 0, 0, 0);
          } else {
            for (int k = 0; k < 8 && u0 + k < H; ++k) o[k] = valid ? stage[rrow * 8 + k] : zero_of<T>();
          }
        }
        __syncwarp();  // the stage is rewritten by the next n-tile
      }

      cp_async_wait<1>();  // this thread's copies of step s + 1 landed; the barrier publishes them CTA-wide
      if constexpr (kCluster) {
        __syncthreads();
      } else {  // h_t of the whole group, from L2 (ld.cg: L1 is not coherent across SMs)
        group_barrier(counter, ++epoch * static_cast<unsigned int>(CS));
        T* const hn_s = hbuf + nxt * BT * h_row;
        const T* const g_s = gbuf + static_cast<size_t>(nxt) * BT * Hp;
        const int per_row = Hp / 8;
        for (int i = tid; i < BT * per_row; i += kThreads) {
          const int bl = i / per_row, c = i - bl * per_row;
          *reinterpret_cast<uint4*>(hn_s + bl * h_row + c * 8) =
              __ldcg(reinterpret_cast<const uint4*>(g_s + static_cast<size_t>(bl) * Hp + c * 8));
        }
        __syncthreads();
      }
    }
    if constexpr (kCluster) {
      if (S > 0) wait_h(S & 1);  // the last step's fill: every fill is waited for exactly once
    }
    cp_async_wait<0>();

    // h_n, c_n of this CTA's units.
    const T* const hfin = hbuf + (S & 1) * BT * h_row;
    for (int i = tid; i < BT * kUnitsPerCta; i += kThreads) {
      const int bl = i / kUnitsPerCta, ul = i % kUnitsPerCta, b = b_base + bl, uu = rank * kUnitsPerCta + ul;
      if (b < B && uu < H) {
        const size_t o = (static_cast<size_t>(d) * B + b) * H + uu;
        hn[o] = hfin[bl * h_row + uu];
        cn[o] = Dt<T>::from_f(cbuf[bl * kCRow + ul]);
      }
    }
  }
  if constexpr (kCluster) cluster_sync();  // no CTA leaves while a peer may still address its shared memory
}

template <typename T, int KT, bool kCluster>
__global__ void __launch_bounds__(kThreads, 1) lstm_recurrence_kernel(const KernelArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  if constexpr (kCluster) {
    __trap();  // never launched: the planner picks clusters on sm_90+ only
  } else {
    lstm_recurrence_body<T, KT, kCluster>(a);
  }
#else
  lstm_recurrence_body<T, KT, kCluster>(a);
#endif
}

// ---------------------------------------------------------------------------------------------------------
// host side

using KernelFn = void (*)(KernelArgs);

template <typename T, bool kCluster>
KernelFn kernel_for_kt(int k_tiles) {
  switch (k_tiles) {
    case 2: return lstm_recurrence_kernel<T, 2, kCluster>;
    case 4: return lstm_recurrence_kernel<T, 4, kCluster>;
    case 8: return lstm_recurrence_kernel<T, 8, kCluster>;
    case 16: return lstm_recurrence_kernel<T, 16, kCluster>;
    default: return nullptr;
  }
}

KernelFn kernel_for(LstmDtype dtype, int k_tiles, bool cluster) {
  if (dtype == LstmDtype::kFloat16) {
    return cluster ? kernel_for_kt<__half, true>(k_tiles) : kernel_for_kt<__half, false>(k_tiles);
  }
  return cluster ? kernel_for_kt<__nv_bfloat16, true>(k_tiles) : kernel_for_kt<__nv_bfloat16, false>(k_tiles);
}

int k_tiles_for(int64_t H) { return H <= 32 ? 2 : H <= 64 ? 4 : H <= 128 ? 8 : 16; }

// Groups of one kernel that fit on the device at once (clusters, or co-resident CTAs / CS). Occupancy queries
// cost microseconds to milliseconds and depend only on the key, so the answer is cached.
cudaError_t max_resident_groups(KernelFn fn, int device, bool cluster, int cs, size_t smem, int* groups) {
  static std::mutex mutex;
  static std::map<std::tuple<int, KernelFn, bool, int, size_t>, int> cache;
  const auto key = std::make_tuple(device, fn, cluster, cs, smem);
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) {
      *groups = it->second;
      return cudaSuccess;
    }
  }
  cudaError_t err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  int n = 0;
  if (cluster) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(cs));
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = static_cast<unsigned>(cs);
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    err = cudaOccupancyMaxActiveClusters(&n, fn, &cfg);
  } else {
    int per_sm = 0, sms = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kThreads, smem);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    n = per_sm * sms / cs;
  }
  if (err != cudaSuccess) return err;
  std::lock_guard<std::mutex> lock(mutex);
  cache[key] = n;
  *groups = n;
  return cudaSuccess;
}

size_t gbuf_bytes(const LstmRecurrenceParams& p, const LstmPlan& plan) {
  const int64_t hp = (p.H + 7) / 8 * 8;
  const size_t bytes = size_t(p.D) * plan.groups_per_direction * 2 * plan.batch_tile * hp * 2;
  return (bytes + 255) / 256 * 256;
}

}  // namespace

cudaError_t plan_lstm_recurrence(const LstmRecurrenceParams& p, LstmPlan* plan) {
  if (p.B < 1 || p.T < 0 || p.H < 1 || p.H > kLstmMaxHidden || p.D < 1 || p.D > 2) return cudaErrorInvalidValue;
  int device = 0, major = 0, smem_optin = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;

  LstmPlan pl{};
  pl.algo = p.algo == LstmAlgo::kAuto ? (major >= 9 ? LstmAlgo::kCluster : LstmAlgo::kCooperative) : p.algo;
  if (major < 8 || (pl.algo == LstmAlgo::kCluster && major < 9)) return cudaErrorNotSupported;
  const bool cluster = pl.algo == LstmAlgo::kCluster;
  pl.k_tiles = k_tiles_for(p.H);
  pl.cluster_size = static_cast<int>((p.H + kUnitsPerCta - 1) / kUnitsPerCta);

  int bt_cap = kMaxBatchTile;
  while (bt_cap > 8 && smem_layout(pl.k_tiles, bt_cap).total > static_cast<size_t>(smem_optin)) bt_cap -= 8;
  if (smem_layout(pl.k_tiles, bt_cap).total > static_cast<size_t>(smem_optin)) return cudaErrorNotSupported;

  const KernelFn fn = kernel_for(p.dtype, pl.k_tiles, cluster);
  if (fn == nullptr) return cudaErrorInvalidValue;
  int groups = 0;
  err = max_resident_groups(fn, device, cluster, pl.cluster_size, smem_layout(pl.k_tiles, bt_cap).total, &groups);
  if (err != cudaSuccess) return err;
  const int per_direction = groups / static_cast<int>(p.D);
  if (per_direction < 1) return cudaErrorNotSupported;

  // Spread the batch over as many resident groups as there are 8-row n-tiles (small tiles: lowest latency),
  // up to bt_cap rows per tile; beyond that, groups loop over tiles.
  const int64_t b8 = (p.B + 7) / 8;
  int64_t g = b8 < per_direction ? b8 : per_direction;
  int64_t bt = 8 * ((b8 + g - 1) / g);
  if (bt > bt_cap) bt = bt_cap;
  const int64_t tiles = (p.B + bt - 1) / bt;
  if (g > tiles) g = tiles;
  pl.batch_tile = static_cast<int>(bt);
  pl.num_tiles = static_cast<int>(tiles);
  pl.groups_per_direction = static_cast<int>(g);
  pl.smem_bytes = smem_layout(pl.k_tiles, pl.batch_tile).total;
  pl.scratch_bytes = cluster ? 0 : gbuf_bytes(p, pl) + size_t(p.D) * pl.groups_per_direction * sizeof(unsigned int);
  *plan = pl;
  return cudaSuccess;
}

cudaError_t launch_lstm_recurrence(const LstmRecurrenceParams& p, const LstmPlan& plan, void* scratch,
                                   cudaStream_t stream) {
  const bool cluster = plan.algo == LstmAlgo::kCluster;
  const KernelFn fn = kernel_for(p.dtype, plan.k_tiles, cluster);
  if (fn == nullptr || (!cluster && scratch == nullptr)) return cudaErrorInvalidValue;

  KernelArgs args{};
  args.x = p.x_proj;
  args.w = p.w_hh;
  args.h0 = p.h0;
  args.c0 = p.c0;
  args.lengths = p.lengths;
  args.out = p.out;
  args.hn = p.h_n;
  args.cn = p.c_n;
  args.B = static_cast<int>(p.B);
  args.T = static_cast<int>(p.T);
  args.H = static_cast<int>(p.H);
  args.D = static_cast<int>(p.D);
  args.sB = p.x_stride_b;
  args.sT = p.x_stride_t;
  args.cs = plan.cluster_size;
  args.groups = plan.groups_per_direction;
  args.bt = plan.batch_tile;
  args.num_tiles = plan.num_tiles;
  args.vec_out = p.H % 8 == 0;
  args.vec_x = p.H % 8 == 0 && reinterpret_cast<uintptr_t>(p.x_proj) % 16 == 0 && p.x_stride_b % 8 == 0 &&
               p.x_stride_t % 8 == 0;
  const int n_groups = static_cast<int>(p.D) * plan.groups_per_direction;
  if (!cluster) {
    args.gbuf = scratch;
    args.counters = reinterpret_cast<unsigned int*>(static_cast<char*>(scratch) + gbuf_bytes(p, plan));
    const cudaError_t err = cudaMemsetAsync(args.counters, 0, sizeof(unsigned int) * n_groups, stream);
    if (err != cudaSuccess) return err;
  }

  cudaError_t err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(plan.smem_bytes));
  if (err != cudaSuccess) return err;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(n_groups * plan.cluster_size));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = plan.smem_bytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr{};
  if (cluster) {
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = static_cast<unsigned>(plan.cluster_size);
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
  } else {  // the CTAs of a group wait for each other: all must be resident, or the launch fails (no hang)
    attr.id = cudaLaunchAttributeCooperative;
    attr.val.cooperative = 1;
  }
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  err = cudaLaunchKernelEx(&cfg, fn, args);
  if (err != cudaSuccess) return err;
  return cudaGetLastError();
}

}  // namespace crnn_fast
