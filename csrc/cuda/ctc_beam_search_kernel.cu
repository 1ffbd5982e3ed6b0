// CTC prefix beam search on the GPU: one thread block per sequence, looping over the frames inside the
// kernel, so the whole batch is one launch. Semantics: exactly crnn_fast::ctc_beam_search on the CPU
// (csrc/cpu/ctc_beam_search.cpp, itself crnn_fast.reference.ctc.ctc_beam_search_ref): the same candidates,
// float64 scores with the same formulas, the same pruning and tie order (score desc, tokens ascending).
//   B batch, T frames, C classes (blank included), K beam width (<= kThreads), N nbest, O lm_order,
//   G "head" classes of a frame (the best few non-blank classes, see below), CAP candidate buffer entries.
//
// Per frame, in the block:
//   1. scan the row (NaN/+inf check, best non-blank log-prob, blank log-prob): skip the extension step when
//      blank-dominated;
//   2. select, by a block radix select over the key (log-prob desc, class asc), the allowed classes (the
//      top_k set and/or those at or above min(token_min_logp, the row's max), when given) and the G head
//      classes (the top min(K + 8, ...) allowed classes); with few allowed classes the head is all of them
//      and nothing else is ever looked at;
//   3. the prefixes of the beam: blank and stay, plus the extension of their parent when it is in the beam
//      (found by prefix identity, below) — exact, into the candidate buffer;
//   4. new prefixes y + c: first for every beam slot × head class, then, only if the bound still lets one
//      through, every other class (a strided scan with a cheap upper-bound test first). Each candidate is
//      kept iff its score >= bound = max(K-th best so far, best - beam_threshold); when the buffer fills
//      it is sorted and cut to K (raising the bound), so any number of candidates fit in CAP entries;
//   5. sort the buffer (bitonic, ties by token sequence), cut to K and the threshold: the next beam.
// After the last frame, the first N entries are written out; then, one hypothesis at a time, the block computes
// the most probable alignment of its tokens (csrc/ctc_align.h: the states of a frame spread over the threads,
// one barrier per frame, the 2-bit steps in global scratch) and thread 0 traces it into frames and confidences.
// Prefixes: every prefix created gets a node (parent, token) in a per-sequence global array: the token
// sequence of a beam entry is its node chain. Prefix identity (to merge y + c with an entry already in the
// beam) is (64-bit rolling hash of the tokens, length); the node is not an identity (a prefix that leaves the
// beam and comes back gets a new node). A hash collision would need two distinct prefixes of equal length in
// one frame's beam with equal 64-bit hashes (~K^2 2^-64 per frame).
// LM state (last O-1 LM words, backoff sums, upper bound) lives per beam slot in global scratch, double-
// buffered, computed once when the prefix enters the beam (the CPU op's init_lm_state).
#ifdef CRNN_FAST_CUDA_EMU
#include "ctc_beam_search_emu.h"  // tests/ops: runs this file on the CPU, a std::thread per CUDA thread
#else
#include <cuda_runtime.h>
#endif

#include <cfloat>
#include <cstdint>

#include "../ctc_align.h"
#include "ctc_beam_search_device.cuh"
#include "ctc_beam_search_kernels.h"

namespace crnn_fast {
namespace {

using ctc_dev::kNegInf;
using ctc_dev::log_add;
using ctc_dev::loosen;

constexpr int kThreads = 256;
constexpr int kHeadExtra = 8;
static_assert(kThreads == 256, "the radix select maps a thread to each of the 256 digits");  // head classes beyond K: a slot's merged children never empty its head

__device__ __forceinline__ bool is_neg_inf(double x) { return isinf(x) && x < 0; }

// Orderable key of a log-prob: larger value -> larger key. Ties broken by the class (lower id first) in
// the low word of Key.
__device__ __forceinline__ uint64_t value_key(double v) {
  const uint64_t bits = static_cast<uint64_t>(__double_as_longlong(v));
  return (bits >> 63) ? ~bits : bits | 0x8000000000000000ULL;
}
struct Key {
  uint64_t v;
  uint32_t i;
};
__device__ __forceinline__ Key class_key(double v, int c) { return Key{value_key(v), ~static_cast<uint32_t>(c)}; }
__device__ __forceinline__ bool key_ge(const Key& a, const Key& b) { return a.v > b.v || (a.v == b.v && a.i >= b.i); }

struct Shared {
  // candidate buffer, CAP entries (SoA)
  double *c_score, *c_pb, *c_pnb, *c_lm;
  int32_t *c_slot, *c_tok, *c_trie, *c_new, *c_idx;
  // beam slots, two buffers of K
  uint64_t *s_hash[2], *s_phash[2];
  double *s_pb[2], *s_pnb[2], *s_lm[2];
  int32_t *s_len[2], *s_last[2], *s_trie[2], *s_node[2];
  // per frame, per slot of the current beam
  double *f_total, *f_lmub;
  int32_t *f_kid_head, *f_kid_next, *f_parent;
  int32_t* g;  // head classes
};

struct Scalars {
  int count, n, node_next, gcount, done, bad, allowed;
  int need;
  double bound, best, max_lp, lp_blank, max_head, max_nonhead;
  Key thr_k, thr_g, prefix;
  int hist[256];
  int scan[256];
  uint64_t kv[kThreads];  // rank select: each thread's class key
  uint32_t ki[kThreads];
  int elig[kThreads];
  double red[kThreads / 32];
};

__device__ double block_max(double v, Scalars& S) {
#ifdef CRNN_FAST_CUDA_EMU
  v = emu::warp_max(v);
#else
  for (int o = 16; o > 0; o /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
#endif
  __syncthreads();
  if ((threadIdx.x & 31) == 0) S.red[threadIdx.x / 32] = v;
  __syncthreads();
  double r = S.red[0];
  for (int w = 1; w < kThreads / 32; ++w) r = fmax(r, S.red[w]);
  __syncthreads();
  return r;
}

template <typename scalar_t>
struct Ctx {
  const CtcBeamSearchParams& P;
  Shared& sh;
  Scalars& S;
  const scalar_t* lp;  // the sequence's (T, C) rows
  const scalar_t* row;
  int32_t* nodes;      // (node_cap, 2)
  int64_t* lm_ctx;     // (2, K, cap)
  double* lm_acc;      // (2, K, O + 1)
  int32_t* lm_meta;    // (2, K, 2)
  int cur;             // current beam buffer
  int K;
  int ctx_cap;

  __device__ double lpc(int64_t c) const { return static_cast<double>(row[c]); }

  // Whether class c is allowed to extend a prefix this frame (top_k, token_min_logp: key >= S.thr_k).
  __device__ bool is_allowed(int c) const {
    return !(P.use_top_k || P.use_token_floor) || key_ge(class_key(lpc(c), c), S.thr_k);
  }

  // ---- block radix select: the key of the `m`-th best eligible class (eligible: not blank, and in the
  // top_k set when `filter`); every eligible class with key >= the result is among the m best.
  __device__ Key select(int m, bool filter) {
    const int tid = threadIdx.x;
    if (P.C <= kThreads) {  // a class per thread: its rank among the eligible classes, one pass
      const int c = tid;
      bool ok = c < P.C && c != P.blank;
      Key k{0, 0};
      if (ok) {
        k = class_key(lpc(c), c);
        if (filter && !key_ge(k, S.thr_k)) ok = false;
      }
      S.kv[tid] = k.v;
      S.ki[tid] = k.i;
      S.elig[tid] = ok;
      __syncthreads();
      if (ok) {
        int rank = 0;
        for (int o = 0; o < P.C; ++o) {
          rank += S.elig[o] && (S.kv[o] > k.v || (S.kv[o] == k.v && S.ki[o] > k.i));
        }
        if (rank == m - 1) S.prefix = k;
      }
      __syncthreads();
      const Key r = S.prefix;
      __syncthreads();
      return r;
    }
    if (tid == 0) {
      S.prefix = Key{0, 0};
      S.need = m;
      S.done = 0;
    }
    uint64_t vmask = 0;
    uint32_t imask = 0;
    for (int d = 0; d < 12; ++d) {
      for (int i = tid; i < 256; i += kThreads) S.hist[i] = 0;
      __syncthreads();
      const Key pre = S.prefix;
      for (int c = tid; c < P.C; c += kThreads) {
        if (c == P.blank) continue;
        const double v = lpc(c);
        const Key k = class_key(v, c);
        if ((k.v & vmask) != pre.v || (k.i & imask) != pre.i) continue;
        if (filter && !key_ge(k, S.thr_k)) continue;
        const int digit = d < 8 ? static_cast<int>((k.v >> (56 - 8 * d)) & 0xff)
                                : static_cast<int>((k.i >> (24 - 8 * (d - 8))) & 0xff);
        atomicAdd(&S.hist[digit], 1);
      }
      __syncthreads();
      // Suffix sums of the histogram (an inclusive scan of it reversed): the digit is where they reach
      // `need`. kThreads == 256 == the number of digits.
      const int need = S.need;  // read before the barriers below: one thread rewrites it after them
      S.scan[tid] = S.hist[255 - tid];
      __syncthreads();
      for (int off = 1; off < 256; off <<= 1) {
        const int add = tid >= off ? S.scan[tid - off] : 0;
        __syncthreads();
        S.scan[tid] += add;
        __syncthreads();
      }
      const int before = tid > 0 ? S.scan[tid - 1] : 0;
      if (S.scan[tid] >= need && before < need) {
        const int dig = 255 - tid;
        const int left = need - before;
        S.need = left;
        if (d < 8) S.prefix.v |= static_cast<uint64_t>(dig) << (56 - 8 * d);
        else S.prefix.i |= static_cast<uint32_t>(dig) << (24 - 8 * (d - 8));
        if (S.hist[dig] == left) S.done = 1;  // every class with this prefix is in: stop here
      }
      __syncthreads();
      if (d < 8) vmask |= 0xffULL << (56 - 8 * d); else imask |= 0xffu << (24 - 8 * (d - 8));
      if (S.done) break;
      __syncthreads();
    }
    const Key r = S.prefix;
    __syncthreads();
    return r;
  }

  // ---- token sequences ------------------------------------------------------------------------------
  struct Cursor {
    int node, pending, depth;
  };
  __device__ int cur_tok(const Cursor& a) const { return a.pending >= 0 ? a.pending : nodes[2 * a.node + 1]; }
  __device__ void pop(Cursor& a) const {
    if (a.pending >= 0) a.pending = -1; else a.node = nodes[2 * a.node];
    --a.depth;
  }
  __device__ Cursor cursor_of(int e) const {
    const int slot = sh.c_slot[e];
    if (sh.c_new[e]) return Cursor{sh.s_node[cur][slot], sh.c_tok[e], sh.s_len[cur][slot] + 1};
    return Cursor{sh.s_node[cur][slot], -1, sh.s_len[cur][slot]};
  }
  // Token sequence of candidate a < that of b (lexicographic, a proper prefix first).
  __device__ bool seq_less(int a, int b) const {
    Cursor x = cursor_of(a), y = cursor_of(b);
    const int lx = x.depth, ly = y.depth;
    while (x.depth > ly) pop(x);
    while (y.depth > lx) pop(y);
    int dx = -1, dy = -1;  // the shallowest difference seen so far = the first one
    while (x.depth > 0) {
      if (x.pending < 0 && y.pending < 0 && x.node == y.node) break;
      const int tx = cur_tok(x), ty = cur_tok(y);
      if (tx != ty) {
        dx = tx;
        dy = ty;
      }
      pop(x);
      pop(y);
    }
    if (dx >= 0) return dx < dy;
    return lx < ly;
  }
  __device__ bool ranks_before(int a, int b) const {
    const double sa = sh.c_score[a], sb = sh.c_score[b];
    if (sa != sb) return sa > sb;
    if (a == b) return false;
    return seq_less(a, b);
  }

  // Sorts the first `n` buffer entries into c_idx (beam order); entries >= n go last.
  __device__ void sort_buffer(int n) {
    int p2 = 1;
    while (p2 < n) p2 <<= 1;
    for (int i = threadIdx.x; i < p2; i += kThreads) sh.c_idx[i] = i;
    __syncthreads();
    for (int k = 2; k <= p2; k <<= 1) {
      for (int j = k >> 1; j > 0; j >>= 1) {
        for (int i = threadIdx.x; i < p2; i += kThreads) {
          const int ixj = i ^ j;
          if (ixj <= i) continue;
          const int a = sh.c_idx[i], b = sh.c_idx[ixj];
          const bool a_first = a < n && (b >= n || ranks_before(a, b));
          const bool b_first = b < n && (a >= n || ranks_before(b, a));
          const bool up = (i & k) == 0;
          if (up ? b_first : a_first) {
            sh.c_idx[i] = b;
            sh.c_idx[ixj] = a;
          }
        }
        __syncthreads();
      }
    }
  }

  // Sorts the buffer, keeps its K best (and, when `final`, those within the beam threshold) in entries
  // 0 .. count-1 in beam order, and raises the bound.
  __device__ void compact(bool final) {
    __syncthreads();
    const int n = min(S.count, capacity);
    sort_buffer(n);
    int keep = min(n, K);
    const int tid = threadIdx.x;
    double score = 0, pb = 0, pnb = 0, lmv = 0;
    int slot = 0, tok = 0, trie = 0, isnew = 0;
    if (tid < keep) {
      const int e = sh.c_idx[tid];
      score = sh.c_score[e]; pb = sh.c_pb[e]; pnb = sh.c_pnb[e]; lmv = sh.c_lm[e];
      slot = sh.c_slot[e]; tok = sh.c_tok[e]; trie = sh.c_trie[e]; isnew = sh.c_new[e];
    }
    __syncthreads();
    if (tid < keep) {
      sh.c_score[tid] = score; sh.c_pb[tid] = pb; sh.c_pnb[tid] = pnb; sh.c_lm[tid] = lmv;
      sh.c_slot[tid] = slot; sh.c_tok[tid] = tok; sh.c_trie[tid] = trie; sh.c_new[tid] = isnew;
    }
    __syncthreads();
    if (tid == 0) {
      const double best = keep > 0 ? sh.c_score[0] : kNegInf;
      S.best = fmax(S.best, best);
      if (final && P.use_threshold && keep > 0) {
        const double floor = sh.c_score[0] - P.beam_threshold;
        int k = 0;
        while (k < keep && sh.c_score[k] >= floor) ++k;
        keep = k;
      }
      S.count = keep;
      double b = keep >= K ? sh.c_score[K - 1] : kNegInf;
      if (P.use_threshold && !is_neg_inf(S.best)) b = fmax(b, S.best - P.beam_threshold);
      S.bound = b;
    }
    __syncthreads();
  }
  int capacity;

  __device__ void push(int e, double score, double pb, double pnb, double lmv, int slot, int tok, int trie,
                       int isnew) {
    sh.c_score[e] = score; sh.c_pb[e] = pb; sh.c_pnb[e] = pnb; sh.c_lm[e] = lmv;
    sh.c_slot[e] = slot; sh.c_tok[e] = tok; sh.c_trie[e] = trie; sh.c_new[e] = isnew;
  }

  // ---- LM -----------------------------------------------------------------------------------------------
  __device__ int64_t* ctx_of(int buf, int slot) const { return lm_ctx + (static_cast<int64_t>(buf) * K + slot) * ctx_cap; }
  __device__ double* acc_of(int buf, int slot) const { return lm_acc + (static_cast<int64_t>(buf) * K + slot) * (P.lm_order + 1); }
  __device__ int32_t* meta_of(int buf, int slot) const { return lm_meta + (static_cast<int64_t>(buf) * K + slot) * 2; }

  // The CPU op's init_lm_state: the LM state of a prefix made from the one in (pbuf, pslot) by `token`
  // (pslot < 0: the empty prefix).
  __device__ void init_lm(int buf, int slot, int pbuf, int pslot, int64_t token) const {
    const ctc::LMView& lm = P.lm;
    const int n1 = P.lm_order - 1;
    int64_t* ctx = ctx_of(buf, slot);
    int n = 0;
    if (n1 > 0) {
      if (pslot < 0) {
        if (P.lm_bos >= 0) ctx[n++] = P.lm_bos;
      } else {
        const int64_t* pctx = ctx_of(pbuf, pslot);
        const int pn = meta_of(pbuf, pslot)[0];
        ctx[n++] = P.lm_token_map[token];
        for (int i = 0; i < pn && n < n1; ++i) ctx[n++] = pctx[i];
      }
    }
    double* A = acc_of(buf, slot);
    int64_t found[kCtcBeamCudaMaxLMOrder + 1];
    uint64_t h = ctc::kSeed;
    int kmax = 0;
    for (int k = 1; k <= n; ++k) {
      h = ctc::mix(h, ctx[k - 1]);
      found[k] = lm.find(h);
      if (found[k] >= 0) kmax = k;
    }
    A[n] = 0.0;
    for (int k = n; k >= 1; --k) A[k - 1] = found[k] >= 0 ? A[k] + lm.log10_backoff(found[k]) : A[k];
    // A query returns at some level k <= kmax, A[k] + p(h_k w) <= A[k] + (largest p after h_k).
    double ub = A[0] + P.lm_max_unigram;
    for (int k = 1; k <= kmax; ++k) {
      if (found[k] >= 0) ub = fmax(ub, A[k] + lm.log10_max_next(found[k]));
    }
    A[P.lm_order] = ub * ctc::kLn10;
    meta_of(buf, slot)[0] = n;
    meta_of(buf, slot)[1] = kmax;
  }
  __device__ void copy_lm(int buf, int slot, int pbuf, int pslot) const {
    for (int i = 0; i < ctx_cap; ++i) ctx_of(buf, slot)[i] = ctx_of(pbuf, pslot)[i];
    for (int i = 0; i <= P.lm_order; ++i) acc_of(buf, slot)[i] = acc_of(pbuf, pslot)[i];
    meta_of(buf, slot)[0] = meta_of(pbuf, pslot)[0];
    meta_of(buf, slot)[1] = meta_of(pbuf, pslot)[1];
  }
  // ln P(class c | context of the prefix in slot j): the CPU op's lm_logprob (bottom-up: every stored
  // n-gram's suffix is stored, so the walk stops at the first miss).
  __device__ double lm_logprob(int j, int64_t c) const {
    const ctc::LMView& lm = P.lm;
    const int64_t* ctx = ctx_of(cur, j);
    const double* A = acc_of(cur, j);
    const int kmax = meta_of(cur, j)[1];
    uint64_t g = ctc::mix(ctc::kSeed, P.lm_token_map[c]);
    const int64_t u = lm.find(g);
    double p = u >= 0 ? lm.log10_prob(u) : kNegInf;
    int level = 0;
    for (int k = 1; k <= kmax; ++k) {
      g = ctc::mix(g, ctx[k - 1]);
      const int64_t i = lm.find(g);
      if (i < 0) break;
      level = k;
      p = lm.log10_prob(i);
    }
    return (A[level] + p) * ctc::kLn10;
  }

  // ---- extension of slot j by class c -----------------------------------------------------------------
  // Returns true and fills the candidate when y + c is a new prefix that can survive the current bound.
  __device__ bool try_extend(int j, int c, bool final_filter, double& score, double& pnb, double& lmc,
                             int& ctrie) const {
    const double total = sh.f_total[j];
    if (is_neg_inf(total)) return false;
    const double bound = S.bound;
    const double l = lpc(c);
    if (total + l + sh.f_lmub[j] < loosen(bound)) return false;  // upper bound first: cheap
    ctrie = 0;
    const int tn = sh.s_trie[cur][j];
    if (P.use_lexicon) {
      const ctc::TrieView trie{P.trie_offsets, P.trie_labels, P.trie_children, P.trie_is_word};
      if (c == P.separator) {
        if (!(tn != 0 && P.trie_is_word[tn])) return false;
      } else {
        const int64_t ch = trie.child(tn, c);
        if (ch < 0) return false;
        ctrie = static_cast<int>(ch);
      }
    }
    for (int k = sh.f_kid_head[j]; k >= 0; k = sh.f_kid_next[k]) {
      if (sh.s_last[cur][k] == c) return false;  // y + c is in the beam: merged into its entry
    }
    if (final_filter && !(c != P.separator && ctrie != 0 && P.trie_is_word[ctrie])) return false;
    const int last = sh.s_len[cur][j] > 0 ? sh.s_last[cur][j] : -1;
    const double a = (c == last ? sh.s_pb[cur][j] : total) + l;
    if (a + sh.f_lmub[j] < loosen(bound)) return false;
    const double term = P.use_lm ? P.lm_weight * lm_logprob(j, c) + P.bonus : P.bonus;
    lmc = sh.s_lm[cur][j] + term;
    score = a + lmc;
    pnb = a;
    if (is_neg_inf(score) || score < bound) return false;
    return true;
  }

  // Offers the extensions (slot p / width, class of index p % width) for p in [0, total): every thread
  // walks its own pairs; when the buffer fills, the block sorts and cuts it, and the walk goes on.
  template <typename ClassOf>
  __device__ void enumerate(int64_t total, int64_t width, ClassOf class_of, bool final_filter) {
    int64_t p = threadIdx.x;
    bool more = p < total;
    while (__syncthreads_or(more)) {
      while (more) {
        const int j = static_cast<int>(p / width);
        const int c = class_of(p % width);
        double score, pnb, lmc;
        int ctrie;
        if (c >= 0 && try_extend(j, c, final_filter, score, pnb, lmc, ctrie)) {
          const int e = atomicAdd(&S.count, 1);
          if (e >= capacity) break;  // full: retry this pair after the block compacts
          push(e, score, kNegInf, pnb, lmc, j, c, ctrie, 1);
        }
        p += kThreads;
        more = p < total;
      }
      __syncthreads();
      if (S.count >= capacity) compact(false);
    }
  }
};

// The most probable alignment of hypothesis o (its tokens already written) over the sequence's len rows, by the
// whole block: writes its frames and confidences. Returns (on every thread) false when it has none.
template <typename scalar_t>
__device__ bool align_hypothesis(const CtcBeamSearchParams& P, const scalar_t* lp, int64_t len, int64_t o,
                                 double* alpha, uint8_t* steps) {
  const int64_t L = P.out_lengths[o];
  if (L <= 0) return true;
  const int64_t* tok = P.tokens + o * P.T;
  const int64_t S = 2 * L + 1, bytes = ctc_align::row_bytes(L);
  double* prev = alpha;
  double* next = alpha + (2 * P.T + 1);
  for (int64_t s = threadIdx.x; s < S; s += kThreads) prev[s] = ctc_align::initial(lp, tok, P.blank, s);
  __syncthreads();
  for (int64_t t = 1; t < len; ++t) {
    const scalar_t* row = lp + t * P.C;
    for (int64_t q = threadIdx.x; q < bytes; q += kThreads) {
      steps[t * bytes + q] = ctc_align::step_cells(prev, next, row, tok, P.blank, S, q);
    }
    __syncthreads();
    double* swap = prev;
    prev = next;
    next = swap;
  }
  __shared__ int ok;
  if (threadIdx.x == 0) {
    ok = ctc_align::trace(prev, steps, lp, P.C, len, tok, L, P.frames + o * P.T, P.confidences + o * P.T);
  }
  __syncthreads();
  const bool r = ok != 0;
  __syncthreads();  // `ok` is rewritten by the next hypothesis
  return r;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) ctc_beam_search_kernel(CtcBeamSearchParams P, int capacity,
                                                                   int64_t node_cap) {
#ifdef CRNN_FAST_CUDA_EMU
  unsigned char* smem = emu::dynamic_smem();
#else
  extern __shared__ __align__(16) unsigned char smem[];
#endif
  __shared__ Shared sh;
  __shared__ Scalars S;
  const int K = static_cast<int>(P.beam_width);
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.x;
  const int gcap = static_cast<int>((K + kHeadExtra < P.C ? K + kHeadExtra : P.C));
  if (tid == 0) {
    unsigned char* q = smem;
    auto take = [&q](size_t bytes) {
      unsigned char* r = q;
      q += (bytes + 15) / 16 * 16;
      return r;
    };
    sh.c_score = reinterpret_cast<double*>(take(8 * capacity));
    sh.c_pb = reinterpret_cast<double*>(take(8 * capacity));
    sh.c_pnb = reinterpret_cast<double*>(take(8 * capacity));
    sh.c_lm = reinterpret_cast<double*>(take(8 * capacity));
    sh.c_slot = reinterpret_cast<int32_t*>(take(4 * capacity));
    sh.c_tok = reinterpret_cast<int32_t*>(take(4 * capacity));
    sh.c_trie = reinterpret_cast<int32_t*>(take(4 * capacity));
    sh.c_new = reinterpret_cast<int32_t*>(take(4 * capacity));
    sh.c_idx = reinterpret_cast<int32_t*>(take(4 * capacity));
    for (int u = 0; u < 2; ++u) {
      sh.s_hash[u] = reinterpret_cast<uint64_t*>(take(8 * K));
      sh.s_phash[u] = reinterpret_cast<uint64_t*>(take(8 * K));
      sh.s_pb[u] = reinterpret_cast<double*>(take(8 * K));
      sh.s_pnb[u] = reinterpret_cast<double*>(take(8 * K));
      sh.s_lm[u] = reinterpret_cast<double*>(take(8 * K));
      sh.s_len[u] = reinterpret_cast<int32_t*>(take(4 * K));
      sh.s_last[u] = reinterpret_cast<int32_t*>(take(4 * K));
      sh.s_trie[u] = reinterpret_cast<int32_t*>(take(4 * K));
      sh.s_node[u] = reinterpret_cast<int32_t*>(take(4 * K));
    }
    sh.f_total = reinterpret_cast<double*>(take(8 * K));
    sh.f_lmub = reinterpret_cast<double*>(take(8 * K));
    sh.f_kid_head = reinterpret_cast<int32_t*>(take(4 * K));
    sh.f_kid_next = reinterpret_cast<int32_t*>(take(4 * K));
    sh.f_parent = reinterpret_cast<int32_t*>(take(4 * K));
    sh.g = reinterpret_cast<int32_t*>(take(4 * (kCtcBeamCudaMaxBeam + kHeadExtra)));
    S.bad = 0;
  }
  __syncthreads();

  const int ctx_cap = P.lm_order - 1 > 1 ? P.lm_order - 1 : 1;
  Ctx<scalar_t> X{P, sh, S, static_cast<const scalar_t*>(P.log_probs) + b * P.T * P.C, nullptr,
                  P.nodes + b * node_cap * 2,
                  P.use_lm ? P.lm_ctx + b * 2 * K * ctx_cap : nullptr,
                  P.use_lm ? P.lm_acc + b * 2 * K * (P.lm_order + 1) : nullptr,
                  P.use_lm ? P.lm_meta + b * 2 * K * 2 : nullptr, 0, K, ctx_cap, capacity};

  const int64_t len = P.lengths[b];
  if (len < 0 || len > P.T) {
    if (tid == 0) P.status[b] = 2;
    return;
  }
  // The empty prefix.
  if (tid == 0) {
    X.nodes[0] = -1; X.nodes[1] = -1;
    S.node_next = 1;
    S.n = 1;
    sh.s_hash[0][0] = ctc::kSeed;
    sh.s_phash[0][0] = 0;
    sh.s_pb[0][0] = 0.0;
    sh.s_pnb[0][0] = kNegInf;
    sh.s_lm[0][0] = 0.0;
    sh.s_len[0][0] = 0;
    sh.s_last[0][0] = -1;
    sh.s_trie[0][0] = 0;
    sh.s_node[0][0] = 0;
    if (P.use_lm) X.init_lm(0, 0, 0, -1, -1);
  }
  __syncthreads();

  for (int64_t t = 0; t < len; ++t) {
    X.row = X.lp + t * P.C;
    const int cur = X.cur;
    // 1. row scan
    bool bad = false;
    double row_max = kNegInf;
    for (int64_t c = tid; c < P.C; c += kThreads) {
      const double v = X.lpc(c);
      bad |= !(v < HUGE_VAL);  // NaN and +inf fail
      row_max = fmax(row_max, v);
    }
    if (__syncthreads_or(bad)) {
      if (tid == 0) P.status[b] = 1;
      return;
    }
    if (!__syncthreads_or(row_max > kNegInf)) {  // -inf for every class
      if (tid == 0) {
        P.status[b] = 3;
        P.bad_frames[b] = static_cast<int32_t>(t);
      }
      return;
    }
    if (P.use_token_floor) row_max = block_max(row_max, S);
    const int n = S.n;
    if (n == 0) continue;  // an empty beam stays empty; the rows after it are still checked
    const double lp_blank = X.lpc(P.blank);
    const bool skip = P.use_skip && lp_blank >= P.skip_floor;
    const bool final_filter = t == len - 1 && P.use_lexicon;
    const bool limited = P.use_top_k || P.use_token_floor;
    int64_t n_allowed = P.use_top_k ? P.top_k : P.C - 1;
    int gcount = 0;
    if (!skip && n_allowed > 0) {
      // 2. allowed classes (key >= S.thr_k) and head classes
      if (limited) {
        Key thr{0, 0};  // below every class's key
        if (P.use_top_k) thr = X.select(static_cast<int>(P.top_k), false);
        if (P.use_token_floor) {
          const Key floor_key{value_key(fmin(P.token_floor, row_max)), 0};  // every class at or above it
          if (!key_ge(thr, floor_key)) thr = floor_key;
        }
        if (tid == 0) {
          S.thr_k = thr;
          S.allowed = 0;
        }
        __syncthreads();
        if (P.use_token_floor) {  // how many are allowed: maybe fewer than top_k
          int mine = 0;
          for (int c = tid; c < P.C; c += kThreads) mine += c != P.blank && X.is_allowed(c);
          atomicAdd(&S.allowed, mine);
          __syncthreads();
          if (S.allowed < n_allowed) n_allowed = S.allowed;
        }
      }
      gcount = static_cast<int>((gcap < n_allowed ? gcap : n_allowed));
    }
    if (gcount > 0) {
      const Key kg = (limited && n_allowed <= gcount) ? S.thr_k : X.select(gcount, limited);
      if (tid == 0) {
        S.thr_g = kg;
        S.gcount = 0;
      }
      __syncthreads();
      double mx = kNegInf;  // best allowed class outside the head
      for (int c = tid; c < P.C; c += kThreads) {
        if (c == P.blank) continue;
        const double v = X.lpc(c);
        const Key kc = class_key(v, c);
        if (limited && !key_ge(kc, S.thr_k)) continue;
        if (key_ge(kc, kg)) sh.g[atomicAdd(&S.gcount, 1)] = c;
        else mx = fmax(mx, v);
      }
      mx = block_max(mx, S);
      if (tid == 0) S.max_nonhead = mx;
      __syncthreads();
    }
    // 3. prefixes of the beam: blank and stay, plus the extension of their parent when it is in the beam
    if (tid < n) {
      sh.f_kid_head[tid] = -1;
      sh.f_kid_next[tid] = -1;
      sh.f_parent[tid] = -1;
    }
    if (tid == 0) {
      S.count = 0;
      S.best = kNegInf;
      S.bound = kNegInf;
    }
    __syncthreads();
    if (tid < n) {
      const int i = tid;
      const double pb = sh.s_pb[cur][i], pnb = sh.s_pnb[cur][i];
      const double total = log_add(pb, pnb);
      sh.f_total[i] = total;
      const double ub = P.use_lm ? P.lm_weight * X.acc_of(cur, i)[P.lm_order] : 0.0;
      sh.f_lmub[i] = sh.s_lm[cur][i] + (P.bonus + ub);
      if (sh.s_len[cur][i] > 0) {  // the parent slot, if the parent prefix is in the beam
        for (int j = 0; j < n; ++j) {
          if (sh.s_len[cur][j] == sh.s_len[cur][i] - 1 && sh.s_hash[cur][j] == sh.s_phash[cur][i]) {
            // kid lists are only read after the barrier below; link with an atomic exchange
            sh.f_kid_next[i] = atomicExch(&sh.f_kid_head[j], i);
            sh.f_parent[i] = j;
            break;
          }
        }
      }
    }
    __syncthreads();
    if (tid < n) {
      const int i = tid;
      const int tok = sh.s_len[cur][i] > 0 ? sh.s_last[cur][i] : -1;
      const double pb = sh.f_total[i] + lp_blank;
      double pnb = tok >= 0 ? sh.s_pnb[cur][i] + X.lpc(tok) : kNegInf;
      if (!skip && tok >= 0 && X.is_allowed(tok)) {
        const int j = sh.f_parent[i];
        if (j >= 0) {
          const int ptok = sh.s_len[cur][j] > 0 ? sh.s_last[cur][j] : -1;
          const double ext = (tok == ptok ? sh.s_pb[cur][j] : sh.f_total[j]) + X.lpc(tok);
          pnb = log_add(pnb, ext);
        }
      }
      bool keep = true;
      if (final_filter) {
        const int tn = sh.s_trie[cur][i];
        keep = sh.s_len[cur][i] == 0 || (tn != 0 && P.trie_is_word[tn]);
      }
      const double score = log_add(pb, pnb) + sh.s_lm[cur][i];
      if (keep && !is_neg_inf(score)) {
        const int e = atomicAdd(&S.count, 1);
        X.push(e, score, pb, pnb, sh.s_lm[cur][i], i, tok, sh.s_trie[cur][i], 0);
      }
    }
    X.compact(false);
    // 4. new prefixes
    if (!skip && gcount > 0) {
      X.enumerate(static_cast<int64_t>(n) * gcount, gcount, [&](int64_t q) { return sh.g[q]; }, final_filter);
      double max_head = kNegInf;
      for (int j = 0; j < n; ++j) max_head = fmax(max_head, sh.f_total[j] + sh.f_lmub[j]);
      if (!is_neg_inf(S.max_nonhead) && max_head + S.max_nonhead >= loosen(S.bound)) {
        const Key kg = S.thr_g;
        const Key kk = S.thr_k;
        X.enumerate(static_cast<int64_t>(n) * P.C, P.C, [&](int64_t q) {
          const int c = static_cast<int>(q);
          if (c == P.blank) return -1;
          const Key kc = class_key(X.lpc(c), c);
          if (key_ge(kc, kg) || (limited && !key_ge(kc, kk))) return -1;
          return c;
        }, final_filter);
      }
    }
    // 5. the next beam
    X.compact(true);
    const int nxt = cur ^ 1;
    const int kept = S.count;
    if (tid < kept) {
      const int k = tid;
      const int j = sh.c_slot[k];
      if (!sh.c_new[k]) {
        sh.s_hash[nxt][k] = sh.s_hash[cur][j];
        sh.s_phash[nxt][k] = sh.s_phash[cur][j];
        sh.s_len[nxt][k] = sh.s_len[cur][j];
        sh.s_last[nxt][k] = sh.s_last[cur][j];
        sh.s_trie[nxt][k] = sh.s_trie[cur][j];
        sh.s_node[nxt][k] = sh.s_node[cur][j];
        if (P.use_lm) X.copy_lm(nxt, k, cur, j);
      } else {
        const int c = sh.c_tok[k];
        sh.s_hash[nxt][k] = ctc::mix(sh.s_hash[cur][j], c);
        sh.s_phash[nxt][k] = sh.s_hash[cur][j];
        sh.s_len[nxt][k] = sh.s_len[cur][j] + 1;
        sh.s_last[nxt][k] = c;
        sh.s_trie[nxt][k] = sh.c_trie[k];
        const int node = atomicAdd(&S.node_next, 1);
        X.nodes[2 * node] = sh.s_node[cur][j];
        X.nodes[2 * node + 1] = c;
        sh.s_node[nxt][k] = node;
        if (P.use_lm) X.init_lm(nxt, k, cur, j, c);
      }
      sh.s_pb[nxt][k] = sh.c_pb[k];
      sh.s_pnb[nxt][k] = sh.c_pnb[k];
      sh.s_lm[nxt][k] = sh.c_lm[k];
    }
    __syncthreads();
    if (tid == 0) S.n = kept;
    X.cur = nxt;
    __syncthreads();
  }

  // Output: the beam in order, its first N entries; then their alignments.
  const int cur = X.cur;
  const int count = static_cast<int>(S.n < P.nbest ? S.n : P.nbest);
  for (int64_t h = tid; h < P.nbest; h += kThreads) {
    const int64_t o = b * P.nbest + h;
    int64_t* tok = P.tokens + o * P.T;
    int64_t* frm = P.frames + o * P.T;
    float* conf = P.confidences + o * P.T;
    int64_t L = -1;
    if (h < count) {
      const int k = static_cast<int>(h);
      L = sh.s_len[cur][k];
      int node = sh.s_node[cur][k];
      for (int64_t i = L - 1; i >= 0; --i) {
        tok[i] = X.nodes[2 * node + 1];
        node = X.nodes[2 * node];
      }
      const double acoustic = log_add(sh.s_pb[cur][k], sh.s_pnb[cur][k]);
      P.scores[o] = acoustic + sh.s_lm[cur][k];
      P.acoustic[o] = acoustic;
      P.lm_scores[o] = sh.s_lm[cur][k];
    } else {
      P.scores[o] = P.acoustic[o] = P.lm_scores[o] = kNegInf;
    }
    P.out_lengths[o] = L;
    for (int64_t i = L > 0 ? L : 0; i < P.T; ++i) {
      tok[i] = -1;
      frm[i] = -1;
      conf[i] = 0.0f;
    }
  }
  __syncthreads();  // the tokens and lengths above are read by the whole block below
  bool aligned = true;
  double* alpha = P.align_alpha + b * 2 * (2 * P.T + 1);
  uint8_t* steps = P.align_steps + b * P.T * ctc_align::row_bytes(P.T);
  for (int h = 0; h < count; ++h) aligned &= align_hypothesis(P, X.lp, len, b * P.nbest + h, alpha, steps);
  if (tid == 0) P.status[b] = aligned ? 0 : 4;
}

int capacity_for(int64_t K) { return K <= 128 ? 512 : 1024; }

size_t smem_bytes(int64_t K, int capacity) {
  auto r = [](size_t x) { return (x + 15) / 16 * 16; };
  size_t s = 4 * r(8 * capacity) + 5 * r(4 * capacity);
  s += 2 * (5 * r(8 * K) + 4 * r(4 * K));
  s += 2 * r(8 * K) + 3 * r(4 * K) + r(4 * (kCtcBeamCudaMaxBeam + kHeadExtra));
  return s;
}

template <typename scalar_t>
cudaError_t launch_typed(const CtcBeamSearchParams& p, cudaStream_t stream) {
  const int capacity = capacity_for(p.beam_width);
  const size_t smem = smem_bytes(p.beam_width, capacity);
  const int64_t node_cap = 1 + p.T * p.beam_width;
#ifdef CRNN_FAST_CUDA_EMU
  (void)stream;
  if (smem > emu::kSmemBytes) return cudaErrorInvalidValue;
  emu::run_grid(p.B, kThreads, [&] { ctc_beam_search_kernel<scalar_t>(p, capacity, node_cap); });
  return cudaSuccess;
#else
  cudaError_t err = cudaFuncSetAttribute(ctc_beam_search_kernel<scalar_t>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  ctc_beam_search_kernel<scalar_t><<<static_cast<unsigned>(p.B), kThreads, smem, stream>>>(p, capacity, node_cap);
  return cudaGetLastError();
#endif
}

}  // namespace

void ctc_beam_search_scratch_sizes(int64_t B, int64_t T, int64_t K, int lm_order, bool use_lm, int64_t* nodes,
                                   int64_t* lm_ctx, int64_t* lm_acc, int64_t* lm_meta, int64_t* align_alpha,
                                   int64_t* align_steps) {
  *nodes = B * (1 + T * K) * 2;
  *align_alpha = B * 2 * (2 * T + 1);
  *align_steps = B * T * ctc_align::row_bytes(T);
  const int64_t cap = lm_order - 1 > 1 ? lm_order - 1 : 1;
  *lm_ctx = use_lm ? B * 2 * K * cap : 1;
  *lm_acc = use_lm ? B * 2 * K * (lm_order + 1) : 1;
  *lm_meta = use_lm ? B * 2 * K * 2 : 1;
}

cudaError_t launch_ctc_beam_search(const CtcBeamSearchParams& p, cudaStream_t stream) {
  if (p.B == 0) return cudaSuccess;
  return p.is_double ? launch_typed<double>(p, stream) : launch_typed<float>(p, stream);
}

}  // namespace crnn_fast
