// Flat views of the lexicon trie and the character n-gram LM that crnn_fast::ctc_beam_search walks, and the
// n-gram key fold: one definition for the CPU op, the CUDA kernel (every function is host and device code there)
// and the CUDA op's host-side checks. No torch.
//   S trie nodes, E trie edges, M LM n-grams, V LM vocabulary.
// Layouts: crnn_fast/formats/lexicon.py (TrieTensors) and crnn_fast/formats/lm.py (LMTensors).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define CRNN_FAST_HOST_DEVICE __host__ __device__
#else
#define CRNN_FAST_HOST_DEVICE
#endif

namespace crnn_fast {
namespace ctc {

// Index of `key` in the ascending a[lo .. hi), or -1 (binary search).
template <typename T>
CRNN_FAST_HOST_DEVICE inline int64_t find_sorted(const T* a, int64_t lo, int64_t hi, T key) {
  const int64_t end = hi;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < end && a[lo] == key ? lo : -1;
}

// ---- Lexicon trie --------------------------------------------------------------------------------------
struct TrieView {
  const int64_t* offsets = nullptr;   // (S + 1,) edges of node s: offsets[s] .. offsets[s + 1] - 1
  const int64_t* labels = nullptr;    // (E,) token of each edge, ascending within a node
  const int64_t* children = nullptr;  // (E,) node each edge leads to
  const bool* is_word = nullptr;      // (S,) node ends a complete word
  int64_t num_nodes = 0;

  CRNN_FAST_HOST_DEVICE int64_t fanout(int64_t node) const { return offsets[node + 1] - offsets[node]; }

  // The child of `node` by `token`, or -1.
  CRNN_FAST_HOST_DEVICE int64_t child(int64_t node, int64_t token) const {
    const int64_t edge = find_sorted(labels, offsets[node], offsets[node + 1], token);
    return edge >= 0 ? children[edge] : -1;
  }
};

// ---- n-gram keys: the same fold as crnn_fast/formats/lm.py (ngram_keys) ---------------------------------
// The key of n-gram (w1 .. wk) folds the words from wk back to w1: key = mix(...mix(mix(kSeed, wk), wk-1)...).
constexpr uint64_t kSeed = 0x2545F4914F6CDD1DULL;
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kMix1 = 0xBF58476D1CE4E5B9ULL;
constexpr uint64_t kMix2 = 0x94D049BB133111EBULL;

CRNN_FAST_HOST_DEVICE inline uint64_t mix(uint64_t h, int64_t word) {
  uint64_t z = h + (static_cast<uint64_t>(word) + 1) * kGolden;
  z = (z ^ (z >> 30)) * kMix1;
  z = (z ^ (z >> 27)) * kMix2;
  return z ^ (z >> 31);
}

// math.log(10) as Python prints it: lm.py scales by the same double.
constexpr double kLn10 = 2.302585092994046;

// ---- n-gram table --------------------------------------------------------------------------------------
struct LMView {
  const uint64_t* keys = nullptr;    // (M,) sorted ascending
  const double* values = nullptr;    // (M, 3) log10 probability, log10 backoff, largest log10 p of an extension
  const int64_t* buckets = nullptr;  // (2^bits + 1,) first index of each top-`bits` prefix
  const uint64_t* filter = nullptr;  // (W,) Bloom filter words, W a power of two
  uint64_t filter_mask = 0;          // 64 W - 1
  int64_t size = 0;
  int shift = 63;  // 64 - bits

  // False when `key` is certainly not in the table (a small, cache-resident test before the table's).
  CRNN_FAST_HOST_DEVICE bool maybe(uint64_t key) const {
    const uint64_t a = key & filter_mask, b = (key >> 32) & filter_mask;
    return ((filter[a >> 6] >> (a & 63)) & (filter[b >> 6] >> (b & 63)) & 1) != 0;
  }

  // Index of `key` in the table, or -1.
  CRNN_FAST_HOST_DEVICE int64_t find(uint64_t key) const {
    if (!maybe(key)) return -1;
    const uint64_t b = key >> shift;
    return find_sorted(keys, buckets[b], buckets[b + 1], key);
  }
  CRNN_FAST_HOST_DEVICE double log10_prob(int64_t i) const { return values[3 * i]; }
  CRNN_FAST_HOST_DEVICE double log10_backoff(int64_t i) const { return values[3 * i + 1]; }
  // The largest log10 probability of the n-grams that extend n-gram i by one word (-inf when none).
  CRNN_FAST_HOST_DEVICE double log10_max_next(int64_t i) const { return values[3 * i + 2]; }
};

}  // namespace ctc
}  // namespace crnn_fast
