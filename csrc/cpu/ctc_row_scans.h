// Row scans of the CPU CTC beam search (csrc/cpu/ctc_beam_search_decoder.h), the only O(C) work per frame: the
// NaN/+inf check with each chunk's max, the classes at or above a threshold. AVX2 when the CPU has it, else scalar;
// both give the same results.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CRNN_FAST_X86_SIMD 1
#endif

namespace crnn_fast {
namespace ctc_cpu {

// The smallest float f with double(f) >= t (NaN for NaN): for a float x, x >= f exactly when double(x) >= t.
inline float float_at_least(double t) {
  if (std::isnan(t)) return std::numeric_limits<float>::quiet_NaN();
  if (t <= -static_cast<double>(FLT_MAX)) return t == -std::numeric_limits<double>::infinity() ? -std::numeric_limits<float>::infinity() : -FLT_MAX;
  if (t > static_cast<double>(FLT_MAX)) return std::numeric_limits<float>::infinity();
  float f = static_cast<float>(t);
  if (static_cast<double>(f) < t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// Rows are scanned once per frame in chunks of kChunk classes, keeping each chunk's max: later scans of the
// frame (top_k, candidates above a floor) skip every chunk whose max is below what they look for.
constexpr int64_t kChunk = 64;

// Whether x[0..n) holds no NaN and no +inf; out[i] = max of x[i * kChunk .. min(n, (i + 1) * kChunk)).
template <typename T>
bool finite_chunk_max_scalar(const T* x, int64_t n, T* out) {
  const T inf = std::numeric_limits<T>::infinity();
  bool bad = false;
  for (int64_t begin = 0, i = 0; begin < n; begin += kChunk, ++i) {
    const int64_t end = std::min(n, begin + kChunk);
    T m = -inf;
    for (int64_t k = begin; k < end; ++k) {
      bad |= !(x[k] < inf);  // NaN and +inf both fail v < inf
      m = std::max(m, x[k]);
    }
    out[i] = m;
  }
  return !bad;
}

// Appends to out the i in [begin, end) with x[i] >= thr, ascending; returns how many.
template <typename T>
int64_t collect_ge_scalar(const T* x, int64_t begin, int64_t end, T thr, int32_t* out) {
  int64_t n = 0;
  for (int64_t i = begin; i < end; ++i) {
    out[n] = static_cast<int32_t>(i);
    n += x[i] >= thr;
  }
  return n;
}

#ifdef CRNN_FAST_X86_SIMD
inline __attribute__((target("avx2"))) bool finite_chunk_max_avx2(const float* x, int64_t n, float* out) {
  static_assert(kChunk % 16 == 0, "a chunk is whole pairs of AVX2 vectors");
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0, chunk = 0;
  for (; i + kChunk <= n; i += kChunk, ++chunk) {
    __m256 m0 = _mm256_loadu_ps(x + i), m1 = _mm256_loadu_ps(x + i + 8);
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(m0, inf, _CMP_NLT_UQ), _mm256_cmp_ps(m1, inf, _CMP_NLT_UQ)));
    for (int64_t k = 16; k < kChunk; k += 16) {
      const __m256 a = _mm256_loadu_ps(x + i + k), b = _mm256_loadu_ps(x + i + k + 8);
      bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(a, inf, _CMP_NLT_UQ), _mm256_cmp_ps(b, inf, _CMP_NLT_UQ)));
      m0 = _mm256_max_ps(m0, a);
      m1 = _mm256_max_ps(m1, b);
    }
    // NaN never reaches here as a result (the row is rejected), so max's operand order does not matter.
    __m256 m = _mm256_max_ps(m0, m1);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    out[chunk] = _mm_cvtss_f32(h);
  }
  const bool ok = _mm256_movemask_ps(bad) == 0;
  return finite_chunk_max_scalar(x + i, n - i, out + chunk) && ok;
}

inline __attribute__((target("avx2"))) int64_t collect_ge_avx2(const float* x, int64_t begin, int64_t end, float thr,
                                                          int32_t* out) {
  const __m256 t = _mm256_set1_ps(thr);
  int64_t n = 0, i = begin;
  for (; i + 8 <= end; i += 8) {
    unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_GE_OQ)));
    while (mask) {
      out[n++] = static_cast<int32_t>(i + __builtin_ctz(mask));
      mask &= mask - 1;
    }
  }
  return n + collect_ge_scalar(x, i, end, thr, out + n);
}

inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

template <typename T>
bool finite_chunk_max(const T* x, int64_t n, T* out) {
#ifdef CRNN_FAST_X86_SIMD
  if constexpr (std::is_same_v<T, float>) {
    if (has_avx2()) return finite_chunk_max_avx2(x, n, out);
  }
#endif
  return finite_chunk_max_scalar(x, n, out);
}

template <typename T>
int64_t collect_ge(const T* x, int64_t begin, int64_t end, T thr, int32_t* out) {
#ifdef CRNN_FAST_X86_SIMD
  if constexpr (std::is_same_v<T, float>) {
    if (has_avx2()) return collect_ge_avx2(x, begin, end, thr, out);
  }
#endif
  return collect_ge_scalar(x, begin, end, thr, out);
}

// The threshold in the row's type that selects exactly the values v with double(v) >= t.
template <typename T>
T row_threshold(double t) {
  if constexpr (std::is_same_v<T, float>) {
    return float_at_least(t);
  } else {
    return t;
  }
}

}  // namespace ctc_cpu
}  // namespace crnn_fast
