// Device twins of csrc/cpu/ctc_lm.h (lexicon trie, n-gram key fold, LM table lookup) and the scalar helpers
// of csrc/cpu/ctc_beam_search.cpp, written with the same formulas and order of operations so that the CUDA
// beam search scores every prefix like the CPU op (float64 throughout).
//   S trie nodes, E trie edges, M LM n-grams.
#pragma once
#include <cstdint>

namespace crnn_fast {
namespace ctc_dev {

constexpr uint64_t kSeed = 0x2545F4914F6CDD1DULL;  // == ctc::kSeed (csrc/cpu/ctc_lm.h)
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kMix1 = 0xBF58476D1CE4E5B9ULL;
constexpr uint64_t kMix2 = 0x94D049BB133111EBULL;
constexpr double kLn10 = 2.302585092994046;

__host__ __device__ __forceinline__ uint64_t mix(uint64_t h, int64_t word) {
  uint64_t z = h + (static_cast<uint64_t>(word) + 1) * kGolden;
  z = (z ^ (z >> 30)) * kMix1;
  z = (z ^ (z >> 27)) * kMix2;
  return z ^ (z >> 31);
}

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

struct TrieDev {
  const int64_t* offsets;
  const int64_t* labels;
  const int64_t* children;
  const bool* is_word;
  __device__ int64_t child(int64_t node, int64_t token) const {
    int64_t lo = offsets[node], hi = offsets[node + 1];
    const int64_t end = hi;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (labels[mid] < token) lo = mid + 1; else hi = mid;
    }
    return lo < end && labels[lo] == token ? children[lo] : -1;
  }
};

struct LMDev {
  const uint64_t* keys;
  const double* values;
  const int64_t* buckets;
  int shift;
  const uint64_t* filter;  // (W,) Bloom filter words, W a power of two
  uint64_t filter_mask;    // 64 W - 1
  // False when `key` is certainly not in the table (no false negatives: results never depend on it).
  __device__ bool maybe(uint64_t key) const {
    const uint64_t a = key & filter_mask, b = (key >> 32) & filter_mask;
    return ((filter[a >> 6] >> (a & 63)) & (filter[b >> 6] >> (b & 63)) & 1) != 0;
  }
  __device__ int64_t find(uint64_t key) const {
    if (!maybe(key)) return -1;
    const uint64_t b = key >> shift;
    int64_t lo = buckets[b], hi = buckets[b + 1];
    const int64_t end = hi;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (keys[mid] < key) lo = mid + 1; else hi = mid;
    }
    return lo < end && keys[lo] == key ? lo : -1;
  }
  // values: (M, 3) log10 probability, log10 backoff, largest log10 probability of a one-word extension
  __device__ double log10_prob(int64_t i) const { return values[3 * i]; }
  __device__ double log10_backoff(int64_t i) const { return values[3 * i + 1]; }
  __device__ double log10_max_next(int64_t i) const { return values[3 * i + 2]; }
};

}  // namespace ctc_dev
}  // namespace crnn_fast
