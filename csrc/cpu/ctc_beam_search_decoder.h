// CTC prefix beam search of one sequence on the CPU (SequenceDecoder; the op, parallel over the batch, is
// csrc/cpu/ctc_beam_search.cpp): per-frame top-k, beam threshold, blank-frame skipping, a lexicon trie (hard
// constraint), a character n-gram LM (shallow fusion), n-best lists; each hypothesis's frames and confidences
// are those of the most probable alignment of its text (csrc/ctc_align.h).
//   B batch, T frames, C classes (blank included), K beam width, N nbest, S trie nodes, M LM n-grams.
//
// Semantics: exactly crnn_fast.reference.ctc.ctc_beam_search_ref (read its docstring); every score is
// computed in float64 with the same formulas and order of operations, so n-best lists agree to the bit on
// the same libm. What makes it fast, without changing any result:
//   * prefixes are nodes of a per-sequence prefix tree (parent + token), found by (parent, token) in a
//     flat hash map; the beam holds node ids, never copies of token sequences;
//   * a prefix y+c has one parent, so its p_nb has at most two contributions (stay, and the extension of
//     its parent when both are in the beam): those are computed first, exactly; every other candidate is
//     a new prefix whose score is final the moment it is computed;
//   * the K-th best score seen so far (a min-heap of K scores) and best - beam_threshold bound what can
//     survive pruning; a parent walks its extensions by decreasing log-prob and stops when even the best
//     remaining one (with the LM's upper bound for that context) falls below the bound;
//   * candidate classes per frame (all of them, or the frame's top_k / token_min_logp set): the best
//     beam_width + 8 sorted (one pass with a small heap), the rest above the frame's floor in bins of
//     decreasing key (a counting sort, built only when some walk goes past the first ones); a walk stops at
//     the first bin whose largest key cannot reach the bound (which extensions are offered does not depend
//     on the order they are tried in);
//   * the O(C) row scans (NaN/+inf check and max, candidates above a threshold, top_k) use AVX2 when the CPU
//     has it;
//   * with an LM, the classes the LM has seen after a prefix's last word (a stored bigram) are tried one by
//     one against the LM's largest probability after that context; every other class backs off to its
//     unigram, so its exact score is (a per-parent constant) + lp[c] + lm_weight ln p(c): the walk goes in
//     that order and stops exactly where the bound is;
//   * classes that share an LM word (all characters outside the LM's vocabulary map to <unk>) are one group
//     when that word follows a prefix's last word: one LM lookup for the group, its classes by log-prob;
//   * LM lookups go bottom-up (n-gram suffixes are stored, see crnn_fast/formats/lm.py) behind a Bloom
//     filter, and only for extensions that can still survive.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../ctc_align.h"
#include "../ctc_lm.h"
#include "ctc_row_scans.h"

namespace crnn_fast {
namespace ctc_cpu {

using ctc::LMView;
using ctc::TrieView;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int kMaxLMOrder = 32;
// Lexicon nodes with at most this many children are extended by iterating their children; wider ones (the
// root of a big lexicon) by walking the frame's classes in decreasing log-prob with a trie lookup each.
constexpr int64_t kDirectFanout = 64;
// With top_k at most this, a prefix tries the frame's top_k classes one by one.
constexpr int64_t kDirectTopK = 32;

// log(exp(a) + exp(b)) as max + log1p(exp(-|a - b|)): the reference's formula (and exactly symmetric).
inline double log_add(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double m = a > b ? a : b;
  return m + std::log1p(std::exp(-std::fabs(a - b)));
}

// A bound lowered by a relative margin: upper bounds computed with a different rounding order than the
// exact score must not prune a candidate that ties the bound.
inline double loosen(double bound) {
  return bound == kNegInf ? kNegInf : bound - 1e-9 * std::max(1.0, std::fabs(bound));
}

struct Params {
  int64_t B = 0, T = 0, C = 0, blank = 0, beam_width = 1, nbest = 1;
  bool use_top_k = false;
  int64_t top_k = 0;
  bool use_threshold = false;
  double beam_threshold = 0;
  bool use_skip = false;
  double skip_floor = 0;  // log(blank_skip_threshold)
  bool use_token_floor = false;
  double token_floor = 0;  // token_min_logp
  bool limited() const { return use_top_k || use_token_floor; }  // extension classes are a per-frame set
  bool use_lexicon = false;
  TrieView trie;
  int64_t separator = -1;
  bool use_lm = false;  // an LM is given and lm_weight != 0
  LMView lm;
  const int64_t* lm_token_map = nullptr;  // (C,)
  int lm_order = 1;
  int64_t lm_bos = -1;
  double lm_max_unigram = 0;  // largest log10 unigram probability (the empty n-gram's row; 0 without one)
  const double* lm_unigram = nullptr;  // (C,) log10 unigram probability of each class's LM word
  // The LM words the classes map to, each with its classes (CSR; several classes share a word when they are
  // outside the LM's vocabulary: <unk>). lm_words: 1 + the largest word id a class maps to.
  int64_t lm_words = 0, n_words = 0;
  const int64_t* word_list = nullptr;   // (n_words,) the distinct words
  const int32_t* word_off = nullptr;    // (n_words + 1,)
  const int32_t* word_cls = nullptr;    // (C - 1,) classes of word i: word_cls[word_off[i] .. word_off[i + 1])

  double lm_weight = 0, bonus = 0;
  // outputs
  int64_t* tokens = nullptr;       // (B, N, T)
  int64_t* out_lengths = nullptr;  // (B, N)
  int64_t* frames = nullptr;       // (B, N, T)
  float* confidences = nullptr;    // (B, N, T)
  double* scores = nullptr;        // (B, N)
  double* acoustic = nullptr;      // (B, N)
  double* lm_scores = nullptr;     // (B, N)
};

// Open-addressing map (parent node, token) -> child node; cleared per sequence.
class ChildMap {
 public:
  void clear() {
    if (used_ == 0) return;
    std::fill(keys_.begin(), keys_.end(), kEmpty);
    used_ = 0;
  }
  int32_t find(uint64_t key) const {
    if (keys_.empty()) return -1;
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return vals_[i];
      if (keys_[i] == kEmpty) return -1;
    }
  }
  void insert(uint64_t key, int32_t val) {
    if ((used_ + 1) * 2 > keys_.size()) grow();
    size_t i = slot(key);
    while (keys_[i] != kEmpty) i = (i + 1) & mask_;
    keys_[i] = key;
    vals_[i] = val;
    ++used_;
  }
  static uint64_t key(int32_t parent, int64_t token) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(parent)) << 32) | static_cast<uint32_t>(token);
  }

 private:
  static constexpr uint64_t kEmpty = ~0ULL;
  size_t slot(uint64_t key) const { return static_cast<size_t>(ctc::mix(0, static_cast<int64_t>(key))) & mask_; }
  void grow() {
    std::vector<uint64_t> old_keys = std::move(keys_);
    std::vector<int32_t> old_vals = std::move(vals_);
    const size_t cap = std::max<size_t>(1024, old_keys.size() * 2);
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, -1);
    mask_ = cap - 1;
    used_ = 0;
    for (size_t i = 0; i < old_keys.size(); ++i) {
      if (old_keys[i] != kEmpty) insert(old_keys[i], old_vals[i]);
    }
  }
  std::vector<uint64_t> keys_;
  std::vector<int32_t> vals_;
  size_t mask_ = 0;
  size_t used_ = 0;
};

// What a sequence's decoding found wrong: a valid row with NaN or +inf, or -inf for every class; or a returned
// hypothesis whose most probable alignment sums to -inf (log-probs so close to -inf that sums overflow).
enum class RowStatus { kOk, kNonFinite, kImpossible, kNoAlignment };

struct Entry {  // a prefix in the beam
  int32_t node;
  double pb, pnb, score;
};

struct Cand {  // a prefix of the next beam, before pruning
  int32_t node;  // the existing node (prefixes of the current beam), -1 for a new prefix
  int32_t slot;  // its slot in the current beam (existing) or its parent's slot (new)
  int32_t token, trie;
  double pb, pnb, score, lm;
  int32_t lm_answer = -1;  // a new prefix's LM query (index into Workspace::lm_answers), -1 when none
};

// What an LM query for (prefix y, class c) found on its walk: the stored n-grams, one per
// level k = 1 .. level: (the k newest words of y's context, c), the n-grams a node y + c looks up for its own
// LM state (see init_lm_state).
struct LMAnswer {
  int32_t level;
  int32_t found;  // the found n-grams' LM indices: Workspace::lm_found[found .. found + level)
};
// The answer of a query known to back off to the unigram at once (it found nothing): Workspace::lm_answers[0].
constexpr int32_t kUnigramAnswer = 0;

// Everything one worker thread reuses from sequence to sequence.
struct Workspace {
  // prefix tree
  std::vector<int32_t> parent, token, trie;
  std::vector<double> lm;
  // LM state per node: the last order-1 LM words (newest first), how many, the longest stored context, the
  // backoff sums A[k] (k = 0 .. order-1) of the reference's loop, and the largest A[k] (an upper bound).
  std::vector<int64_t> ctx;
  std::vector<int32_t> nctx, kmax;
  std::vector<double> acc, ub;  // ub: ln of the largest LM probability after the node's context
  ChildMap children;
  // per frame
  std::vector<Entry> beam, next;
  std::vector<Cand> pool;
  // This frame's LM queries, kept for the LM states of the new prefixes they scored ([0]: kUnigramAnswer).
  std::vector<LMAnswer> lm_answers;
  std::vector<int64_t> lm_found;
  std::vector<int64_t> unigram_found;  // per LM word: its unigram's LM index, -2 until looked up
  std::vector<double> heap, totals, heads, heads2, lmub;
  std::vector<double> key, a0;  // LM mode: per-frame walk key of each class; per node ln A[0]
  std::vector<int32_t> seen_stamp;
  int32_t seen_id = 0;
  // The classes c whose LM word follows LM word v in a stored bigram, found on first need (C lookups, most
  // answered by the Bloom filter) and kept for the worker's whole batch.
  // Successors of v: the classes of single-class words, and the indices (into word_list) of words shared by
  // several classes, which are tried as a group (one LM lookup for all of them).
  struct Successors {
    bool known = false;
    std::vector<int32_t> classes, groups;
  };
  std::vector<Successors> successors;
  // Per frame, a shared word's classes above a floor, log-prob descending (stamp: the frame it is for).
  std::vector<std::vector<int32_t>> group_cand;
  std::vector<int32_t> group_stamp;
  std::vector<int32_t> kid_head, kid_next, sel;
  std::vector<int32_t> slot_of, slot_stamp;
  std::vector<int32_t> cand, allowed, allowed_stamp, scratch;
  int64_t n_sorted = 0;
  bool cand_ready = false, bins_ready = false;
  std::vector<int32_t> rest, bin_of, bin_start, bin_fill, binned;  // candidates past the sorted ones, in bins
  std::vector<double> rest_key, binned_key, bin_max;
  int32_t stamp = 0;
  std::vector<int64_t> seq_a, seq_b, out_tok;
  // the output's alignments (csrc/ctc_align.h): two rows of alpha and the steps table
  std::vector<double> align_a, align_b;
  std::vector<uint8_t> align_steps;
};

template <typename scalar_t>
class SequenceDecoder {
 public:
  SequenceDecoder(const Params& p, Workspace& w) : P(p), W(w) {}

  // Decodes sequence b (lp: its (T, C) rows). Returns kOk, or what is wrong with valid row *bad_frame.
  RowStatus run(int64_t b, const scalar_t* lp, int64_t len, int64_t* bad_frame) {
    reset();
    for (int64_t t = 0; t < len; ++t) {
      const scalar_t* row = lp + t * P.C;
      const RowStatus status = scan_row(row);
      if (status != RowStatus::kOk) {
        *bad_frame = t;
        return status;
      }
      // An empty beam stays empty; the rows after it are still checked.
      if (!W.beam.empty()) step(row, t == len - 1);
    }
    return write(b, lp, len) ? RowStatus::kOk : RowStatus::kNoAlignment;
  }

 private:
  const Params& P;
  Workspace& W;
  double best_ = kNegInf;
  double bound_ = kNegInf;  // what a candidate must reach to survive this frame (see offer)
  double loose_ = kNegInf;  // loosen(bound_)

  // Checks a row (NaN or +inf; -inf for every class) and finds each chunk's and the row's highest non-blank
  // log-prob.
  RowStatus scan_row(const scalar_t* row) {
    const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
    const int64_t chunks = (P.C + kChunk - 1) / kChunk;
    chunk_max_.resize(chunks);
    if (!finite_chunk_max(row, P.C, chunk_max_.data())) return RowStatus::kNonFinite;
    // The blank takes no part in the maxima: its chunk's max again without it.
    const int64_t bc = P.blank / kChunk;
    scalar_t mb = -inf;
    for (int64_t c = bc * kChunk; c < std::min(P.C, (bc + 1) * kChunk); ++c) {
      if (c != P.blank) mb = std::max(mb, row[c]);
    }
    chunk_max_[bc] = mb;
    max_lp_ = static_cast<double>(*std::max_element(chunk_max_.begin(), chunk_max_.end()));
    if (max_lp_ == kNegInf && row[P.blank] == -inf) return RowStatus::kImpossible;
    return RowStatus::kOk;
  }

  // Appends to W.scratch the classes c with row[c] >= thr, ascending, maybe without the blank; returns how many.
  int64_t collect_at_least(const scalar_t* row, scalar_t thr) {
    if (static_cast<int64_t>(W.scratch.size()) < P.C) W.scratch.resize(P.C);
    int64_t n = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(chunk_max_.size()); ++i) {
      if (!(chunk_max_[i] >= thr)) continue;
      n += collect_ge(row, i * kChunk, std::min(P.C, (i + 1) * kChunk), thr, W.scratch.data() + n);
    }
    return n;
  }

  // ---- prefix tree -------------------------------------------------------------------------------------
  void reset() {
    W.parent.clear();
    W.token.clear();
    W.trie.clear();
    W.lm.clear();
    W.ctx.clear();
    W.nctx.clear();
    W.kmax.clear();
    W.acc.clear();
    W.ub.clear();
    W.a0.clear();
    W.children.clear();
    W.beam.clear();
    new_node(-1, -1, 0, 0.0);
    W.beam.push_back(Entry{0, 0.0, kNegInf, 0.0});
  }

  int ctx_cap() const { return std::max(P.lm_order - 1, 1); }

  int32_t new_node(int32_t parent, int64_t token, int64_t trie, double lm, const LMAnswer* answer = nullptr) {
    const int32_t id = static_cast<int32_t>(W.parent.size());
    W.parent.push_back(parent);
    W.token.push_back(static_cast<int32_t>(token));
    W.trie.push_back(static_cast<int32_t>(trie));
    W.lm.push_back(lm);
    if (P.use_lm) init_lm_state(id, parent, token, answer);
    return id;
  }

  int32_t child(int32_t parent, int64_t token, int64_t trie, double lm, const LMAnswer* answer) {
    const uint64_t key = ChildMap::key(parent, token);
    int32_t id = W.children.find(key);
    if (id < 0) {
      id = new_node(parent, token, trie, lm, answer);
      W.children.insert(key, id);
    }
    return id;
  }

  // The reference's backoff loop, split: what depends on the context only is done once per node.
  // answer: the LM query that scored parent + token, when there was one: it found the n-grams of levels >= 2
  // below. Every stored n-gram's context and suffix are stored too (CharNgramLM makes it so), so where the
  // query stopped (a miss, or the parent's longest stored context) every longer n-gram is missing as well.
  void init_lm_state(int32_t id, int32_t parent, int64_t token, const LMAnswer* answer) {
    const int n1 = P.lm_order - 1, cap = ctx_cap();
    W.ctx.resize(W.ctx.size() + cap, -1);
    W.acc.resize(W.acc.size() + n1 + 1, 0.0);
    int64_t* ctx = &W.ctx[static_cast<size_t>(id) * cap];
    int n = 0;
    if (n1 > 0) {
      if (parent < 0) {
        if (P.lm_bos >= 0) ctx[n++] = P.lm_bos;
      } else {
        const int64_t* pctx = &W.ctx[static_cast<size_t>(parent) * cap];
        ctx[n++] = P.lm_token_map[token];
        for (int i = 0; i < W.nctx[parent] && n < n1; ++i) ctx[n++] = pctx[i];
      }
    }
    double* A = &W.acc[static_cast<size_t>(id) * (n1 + 1)];
    // Contexts h_k = the k newest words: keys folded from the newest word back.
    int64_t found[kMaxLMOrder + 1];
    uint64_t h = ctc::kSeed;
    int kmax = 0;
    if (answer != nullptr && parent >= 0 && n > 0) {
      found[1] = unigram_found(ctx[0]);
      for (int k = 2; k <= n; ++k) found[k] = k - 1 <= answer->level ? W.lm_found[answer->found + k - 2] : -1;
      for (int k = 1; k <= n; ++k) {
        if (found[k] >= 0) kmax = k;
      }
    } else {
      for (int k = 1; k <= n; ++k) {
        h = ctc::mix(h, ctx[k - 1]);
        found[k] = P.lm.find(h);
        if (found[k] >= 0) kmax = k;
      }
    }
    A[n] = 0.0;
    for (int k = n; k >= 1; --k) A[k - 1] = found[k] >= 0 ? A[k] + P.lm.log10_backoff(found[k]) : A[k];
    // A query returns at some level k <= kmax, A[k] + p(h_k w) <= A[k] + (largest p after h_k).
    double ub = A[0] + P.lm_max_unigram;
    for (int k = 1; k <= kmax; ++k) {
      if (found[k] >= 0) ub = std::max(ub, A[k] + P.lm.log10_max_next(found[k]));
    }
    W.nctx.push_back(n);
    W.kmax.push_back(kmax);
    W.a0.push_back(A[0] * ctc::kLn10);
    W.ub.push_back(ub * ctc::kLn10);
  }

  // ln P(class c | context of node y): the reference's top-down loop returns at the longest stored n-gram
  // (h_k, w); since every stored n-gram's suffix is stored too (CharNgramLM makes it so), the stored
  // lengths are 0 .. L and a bottom-up walk finds L with one lookup per level and stops at the first miss.
  // Most classes a beam looks at are unlikely after the context: L is mostly 0 or 1.
  // level_out, found_out: the level it returns at and the n-grams it found (see LMAnswer).
  double lm_logprob(int32_t y, int64_t c, int32_t* level_out = nullptr, int64_t* found_out = nullptr) const {
    const int n1 = P.lm_order - 1, cap = ctx_cap();
    const int64_t* ctx = &W.ctx[static_cast<size_t>(y) * cap];
    const double* A = &W.acc[static_cast<size_t>(y) * (n1 + 1)];
    const int kmax = W.kmax[y];
    double p = P.lm_unigram[c];
    int level = 0;
    uint64_t g = ctc::mix(ctc::kSeed, P.lm_token_map[c]);
    for (int k = 1; k <= kmax; ++k) {
      g = ctc::mix(g, ctx[k - 1]);
      const int64_t i = P.lm.find(g);
      if (i < 0) break;
      level = k;
      p = P.lm.log10_prob(i);
      if (found_out != nullptr) found_out[k - 1] = i;
    }
    if (level_out != nullptr) *level_out = level;
    return (A[level] + p) * ctc::kLn10;
  }

  // lm_logprob(y, c), kept in W.lm_answers for the node y + c: returns the answer's index.
  int32_t lm_query(int32_t y, int64_t c, double* logprob) {
    int64_t found[kMaxLMOrder];
    int32_t level = 0;
    *logprob = lm_logprob(y, c, &level, found);
    W.lm_answers.push_back(LMAnswer{level, static_cast<int32_t>(W.lm_found.size())});
    W.lm_found.insert(W.lm_found.end(), found, found + level);
    return static_cast<int32_t>(W.lm_answers.size() - 1);
  }

  // The LM index of LM word v's unigram (-1 when not stored), looked up once per worker.
  int64_t unigram_found(int64_t v) {
    if (static_cast<int64_t>(W.unigram_found.size()) <= v) W.unigram_found.resize(v + 1, -2);
    int64_t& i = W.unigram_found[v];
    if (i == -2) i = P.lm.find(ctc::mix(ctc::kSeed, v));
    return i;
  }

  // lm_logprob(y, c) when the LM backs off to c's unigram: the same expression at level 0.
  double lm_unigram_logprob(int32_t y, int64_t c) const {
    const double* A = &W.acc[static_cast<size_t>(y) * P.lm_order];
    return (A[0] + P.lm_unigram[c]) * ctc::kLn10;
  }

  bool is_final(int32_t node) const {
    if (node == 0) return true;
    const int32_t tn = W.trie[node];
    return tn != 0 && P.trie.is_word[tn];
  }

  // ---- candidate classes of a frame ------------------------------------------------------------------
  // The order a parent walks its extensions in: log-prob descending, or with an LM the exact score of an
  // extension the LM backs off to unigrams for, lp[c] + lm_weight ln p(c) (the same for every parent up to
  // a constant); ties by id.
  double walk_key(const scalar_t* row, int32_t c) const {
    return P.use_lm ? W.key[c] : static_cast<double>(row[c]);
  }
  bool before(const scalar_t* row, int32_t a, int32_t b) const {
    const double x = walk_key(row, a), y = walk_key(row, b);
    return x > y || (x == y && a < b);
  }

  // Whether class c may extend a prefix this frame (top_k, token_min_logp; see select_allowed).
  bool is_allowed(int64_t c) const { return !P.limited() || W.allowed_stamp[c] == W.stamp; }

  // Class order: log-prob descending, ties by class id.
  static auto by_logprob(const scalar_t* row) {
    return [row](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
  }

  // The frame's extension classes, best first (by_logprob), in W.allowed and stamped: the top_k non-blank
  // classes, those with log-prob >= min(token_min_logp, the row's max, blank included), or both. Classes at
  // -inf are left out: every candidate they make scores -inf and is dropped, so no result changes, and a
  // row that is mostly -inf (a masked vocabulary) costs no more than a normal one.
  void select_allowed(const scalar_t* row, double lp_blank) {
    W.allowed.clear();
    const auto cmp = by_logprob(row);
    double floor = kNegInf;
    if (P.use_token_floor) floor = std::min(P.token_floor, std::max(max_lp_, lp_blank));
    if (P.use_top_k) {
      select_top_k(row);
    } else if (max_lp_ != kNegInf) {
      const int64_t n = collect_at_least(row, row_threshold<scalar_t>(floor));
      for (int64_t i = 0; i < n; ++i) {
        if (W.scratch[i] != P.blank) W.allowed.push_back(W.scratch[i]);
      }
    }
    // Best first: a prefix's extensions are tried in this order, and the bound rises fastest this way.
    std::sort(W.allowed.begin(), W.allowed.end(), cmp);
    while (!W.allowed.empty()) {
      const double v = static_cast<double>(row[W.allowed.back()]);
      if (v != kNegInf && v >= floor) break;
      W.allowed.pop_back();
    }
    for (int32_t c : W.allowed) W.allowed_stamp[c] = W.stamp;
  }

  // The top_k non-blank classes (ties to the lower id) into W.allowed, unordered; maybe fewer when the rest
  // are -inf.
  void select_top_k(const scalar_t* row) {
    const auto cmp = by_logprob(row);  // top_k ranks by log-prob alone
    if (P.top_k > 64 || P.C < 256) {
      for (int32_t c = 0; c < P.C; ++c) {
        if (c != P.blank) W.allowed.push_back(c);
      }
      std::nth_element(W.allowed.begin(), W.allowed.begin() + (P.top_k - 1), W.allowed.end(), cmp);
      W.allowed.resize(P.top_k);
    } else {
      // The top_k-th largest chunk max is at most the top_k-th largest log-prob (top_k distinct chunks each
      // hold a class that high; the blank's chunk max leaves the blank out), so the classes at or above it
      // hold the top_k, and they are few: only their chunks are read again.
      const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
      scalar_t thr = -inf;
      if (static_cast<int64_t>(chunk_max_.size()) >= P.top_k) {
        // The top_k largest chunk maxima, descending, by insertion: few values ever enter.
        scalar_t best[64];  // this path runs for top_k <= 64
        const int64_t k = P.top_k;
        std::fill(best, best + k, -inf);
        for (const scalar_t v : chunk_max_) {
          if (!(v > thr)) continue;
          int64_t i = k - 1;
          for (; i > 0 && best[i - 1] < v; --i) best[i] = best[i - 1];
          best[i] = v;
          thr = best[k - 1];
        }
      }
      // Not below the lowest finite value: -inf classes are never allowed (see select_allowed), and a row of
      // few finite values would otherwise collect all of its C classes.
      thr = std::max(thr, std::numeric_limits<scalar_t>::lowest());
      const int64_t n = collect_at_least(row, thr);
      for (int64_t i = 0; i < n; ++i) {
        if (W.scratch[i] != P.blank) W.allowed.push_back(W.scratch[i]);
      }
      if (static_cast<int64_t>(W.allowed.size()) > P.top_k) {
        std::nth_element(W.allowed.begin(), W.allowed.begin() + (P.top_k - 1), W.allowed.end(), cmp);
        W.allowed.resize(P.top_k);
      }
    }
  }

  // The classes a prefix may be extended by whose walk key is >= floor (nothing below can survive), in two
  // parts: the best few in the order (key descending, id ascending), found by one pass with a small heap (a
  // walk rarely goes deeper than the beam width); then, built when some walk needs more, all the others
  // above the floor in bins of decreasing key (a counting sort: the order inside a bin does not matter,
  // since which extensions are offered does not depend on the order they are tried in; the walk stops at
  // the first bin whose largest key cannot reach the bound).
  void prepare_candidates(const scalar_t* row, double floor) {
    W.cand_ready = true;
    floor_ = floor;
    W.bins_ready = false;
    if (P.use_lm) {
      if (static_cast<int64_t>(W.key.size()) < P.C) W.key.resize(P.C);
      const double scale = P.lm_weight * ctc::kLn10;
      if (P.limited()) {  // only the allowed classes are walked
        for (const int32_t c : W.allowed) W.key[c] = static_cast<double>(row[c]) + scale * P.lm_unigram[c];
      } else {
        for (int64_t c = 0; c < P.C; ++c) W.key[c] = static_cast<double>(row[c]) + scale * P.lm_unigram[c];
      }
    }
    const int64_t n_src = P.limited() ? static_cast<int64_t>(W.allowed.size()) : P.C - 1;
    const int64_t m = P.beam_width + 8;
    W.cand.clear();
    W.n_sorted = 0;
    if (n_src <= 2 * m) {
      cand_complete_ = false;  // everything goes to the bins
      return;
    }
    auto cmp = [this, row](int32_t a, int32_t b) { return before(row, a, b); };
    std::vector<int32_t>& h = W.cand;  // a heap whose front is the worst kept class
    // `cut`: a value every class worth a look reaches (the floor, then the heap's worst): the scan below is
    // one compare per class and the heap is touched rarely.
    double cut = floor;
    auto offer_class = [&](int32_t c) {
      if (static_cast<int64_t>(h.size()) < m) {
        h.push_back(c);
        std::push_heap(h.begin(), h.end(), cmp);
      } else if (before(row, c, h.front())) {
        std::pop_heap(h.begin(), h.end(), cmp);
        h.back() = c;
        std::push_heap(h.begin(), h.end(), cmp);
      }
      if (static_cast<int64_t>(h.size()) == m) cut = std::max(cut, walk_key(row, h.front()));
    };
    if (P.limited()) {
      for (int32_t c : W.allowed) {
        if (walk_key(row, c) >= cut) offer_class(c);
      }
    } else if (P.use_lm) {
      for (int32_t c = 0; c < P.C; ++c) {
        if (c != P.blank && W.key[c] >= cut) offer_class(c);
      }
    } else {
      if (static_cast<int64_t>(W.scratch.size()) < kChunk) W.scratch.resize(kChunk);
      for (int64_t k = 0; k < static_cast<int64_t>(chunk_max_.size()); ++k) {
        const scalar_t thr = row_threshold<scalar_t>(cut);  // cut rises as the heap fills
        if (!(chunk_max_[k] >= thr)) continue;
        const int64_t n = collect_ge(row, k * kChunk, std::min(P.C, (k + 1) * kChunk), thr, W.scratch.data());
        for (int64_t i = 0; i < n; ++i) {
          const int32_t c = W.scratch[i];
          if (c != P.blank && static_cast<double>(row[c]) >= cut) offer_class(c);
        }
      }
    }
    std::sort(h.begin(), h.end(), cmp);
    W.n_sorted = static_cast<int64_t>(h.size());
    cand_complete_ = W.n_sorted < m;  // fewer than m passed the floor: that is all of them
  }

  // The candidates above the floor that are not among the sorted first ones, in bins.
  void build_bins(const scalar_t* row) {
    W.bins_ready = true;
    W.rest.clear();
    W.rest_key.clear();
    const double floor = floor_;
    const bool after_sorted = W.n_sorted > 0;
    const int32_t last = after_sorted ? W.cand[W.n_sorted - 1] : -1;
    double kmax = kNegInf, kmin = std::numeric_limits<double>::infinity();
    auto take = [&](int32_t c, double k) {
      if (k >= floor && !(after_sorted && !before(row, last, c))) {
        W.rest.push_back(c);
        W.rest_key.push_back(k);
        kmax = std::max(kmax, k);
        if (k != kNegInf) kmin = std::min(kmin, k);
      }
    };
    if (P.limited()) {
      for (int32_t c : W.allowed) take(c, walk_key(row, c));
    } else if (P.use_lm) {
      for (int32_t c = 0; c < P.C; ++c) {
        if (c != P.blank) take(c, W.key[c]);
      }
    } else {
      const int64_t n = collect_at_least(row, row_threshold<scalar_t>(floor));
      for (int64_t i = 0; i < n; ++i) {
        const int32_t c = W.scratch[i];
        if (c != P.blank) take(c, static_cast<double>(row[c]));
      }
    }
    const int64_t n = static_cast<int64_t>(W.rest.size());
    int64_t nb = std::min<int64_t>(64, std::max<int64_t>(1, n / 4));
    const double span = kmax - kmin;
    double scale = nb / span;
    if (!(span > 0) || !std::isfinite(scale)) nb = 1, scale = 0;
    // Bin of key k: floor((kmax - k) * scale), monotone in k (IEEE rounding is), -inf keys in the last bin.
    W.bin_of.resize(n);
    W.bin_start.assign(nb + 1, 0);
    W.bin_max.assign(nb, kNegInf);
    for (int64_t i = 0; i < n; ++i) {
      const double d = (kmax - W.rest_key[i]) * scale;
      const int32_t bin = d < static_cast<double>(nb) ? static_cast<int32_t>(d) : static_cast<int32_t>(nb - 1);
      W.bin_of[i] = bin;
      ++W.bin_start[bin + 1];
      W.bin_max[bin] = std::max(W.bin_max[bin], W.rest_key[i]);
    }
    for (int64_t b = 0; b < nb; ++b) W.bin_start[b + 1] += W.bin_start[b];
    W.binned.resize(n);
    W.binned_key.resize(n);
    W.bin_fill.assign(W.bin_start.begin(), W.bin_start.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t k = W.bin_fill[W.bin_of[i]]++;
      W.binned[k] = W.rest[i];
      W.binned_key[k] = W.rest_key[i];
    }
  }

  // Calls f(c) for every candidate class c with head + key(c) >= the (rising) bound, and maybe for a few
  // below it (f checks what it needs); never misses one that reaches it.
  template <typename F>
  void walk(const scalar_t* row, double head, F f) {
    for (int64_t i = 0; i < W.n_sorted; ++i) {
      const int32_t c = W.cand[i];
      if (head + walk_key(row, c) < loose_bound()) return;
      f(c);
    }
    if (cand_complete_) return;
    if (!W.bins_ready) build_bins(row);
    const int64_t nb = static_cast<int64_t>(W.bin_max.size());
    for (int64_t b = 0; b < nb; ++b) {
      if (W.bin_start[b] == W.bin_start[b + 1]) continue;  // empty (its bin_max is -inf)
      if (head + W.bin_max[b] < loose_bound()) return;
      for (int32_t i = W.bin_start[b]; i < W.bin_start[b + 1]; ++i) {
        if (head + W.binned_key[i] < loose_bound()) continue;
        f(W.binned[i]);
      }
    }
  }

  // ---- bound on what survives this frame's pruning -------------------------------------------------
  void offer(double s) {
    best_ = std::max(best_, s);
    if (static_cast<int64_t>(W.heap.size()) < P.beam_width) {
      W.heap.push_back(s);
      std::push_heap(W.heap.begin(), W.heap.end(), std::greater<double>());
    } else if (s > W.heap.front()) {
      std::pop_heap(W.heap.begin(), W.heap.end(), std::greater<double>());
      W.heap.back() = s;
      std::push_heap(W.heap.begin(), W.heap.end(), std::greater<double>());
    } else {
      return;  // neither the K-th best nor the best changed (s <= K-th best <= best)
    }
    double b = static_cast<int64_t>(W.heap.size()) >= P.beam_width ? W.heap.front() : kNegInf;
    if (P.use_threshold && best_ != kNegInf) b = std::max(b, best_ - P.beam_threshold);
    bound_ = b;
    loose_ = loosen(b);
  }

  // The bound, kept up to date by offer() (read once per candidate: cheaper than recomputing it).
  double bound() const { return bound_; }
  double loose_bound() const { return loose_; }

  // ---- one frame ---------------------------------------------------------------------------------------
  void step(const scalar_t* row, bool last) {
    const double lp_blank = static_cast<double>(row[P.blank]);
    const bool skip = P.use_skip && lp_blank >= P.skip_floor;
    const bool final_filter = last && P.use_lexicon;
    const int32_t n = static_cast<int32_t>(W.beam.size());
    if (++W.stamp == std::numeric_limits<int32_t>::max()) {
      std::fill(W.slot_stamp.begin(), W.slot_stamp.end(), 0);
      std::fill(W.allowed_stamp.begin(), W.allowed_stamp.end(), 0);
      W.stamp = 1;
    }
    if (W.slot_stamp.size() < W.parent.size()) {
      W.slot_stamp.resize(W.parent.size() * 2, 0);
      W.slot_of.resize(W.parent.size() * 2, -1);
    }
    if (static_cast<int64_t>(W.allowed_stamp.size()) < P.C) W.allowed_stamp.assign(P.C, 0);
    W.cand_ready = false;
    if (!skip && P.limited()) select_allowed(row, lp_blank);
    W.pool.clear();
    W.heap.clear();
    W.lm_answers.assign(1, LMAnswer{0, 0});  // kUnigramAnswer
    W.lm_found.clear();
    best_ = bound_ = loose_ = kNegInf;
    W.totals.resize(n);
    W.heads.resize(n);
    W.heads2.resize(n);
    W.lmub.resize(n);
    W.kid_head.assign(n, -1);
    W.kid_next.assign(n, -1);

    // Prefixes of the beam: blank and stay.
    for (int32_t i = 0; i < n; ++i) {
      const Entry& e = W.beam[i];
      W.slot_stamp[e.node] = W.stamp;
      W.slot_of[e.node] = i;
      const double total = log_add(e.pb, e.pnb);
      W.totals[i] = total;
      const int32_t tok = W.token[e.node];
      const double pnb = e.node != 0 ? e.pnb + static_cast<double>(row[tok]) : kNegInf;
      W.pool.push_back(Cand{e.node, i, tok, W.trie[e.node], total + lp_blank, pnb, kNegInf, W.lm[e.node]});
    }
    // ... and the extension of their parent, when it is in the beam too.
    if (!skip) {
      for (int32_t i = 0; i < n; ++i) {
        const int32_t z = W.beam[i].node;
        if (z == 0) continue;
        const int32_t y = W.parent[z];
        if (W.slot_stamp[y] != W.stamp) continue;
        const int32_t j = W.slot_of[y];
        W.kid_next[i] = W.kid_head[j];
        W.kid_head[j] = i;
        const int32_t e = W.token[z];
        if (!is_allowed(e)) continue;
        const double ext = (e == W.token[y] ? W.beam[j].pb : W.totals[j]) + static_cast<double>(row[e]);
        W.pool[i].pnb = log_add(W.pool[i].pnb, ext);
      }
    }
    for (int32_t i = 0; i < n; ++i) {
      Cand& c = W.pool[i];
      if (final_filter && !is_final(c.node)) continue;  // score stays -inf: dropped
      c.score = log_add(c.pb, c.pnb) + c.lm;
      if (c.score != kNegInf) offer(c.score);
    }

    // New prefixes: y + c for y in the beam.
    if (!skip) {
      max_head_ = kNegInf;
      max_head_group_ = kNegInf;
      for (int32_t j = 0; j < n; ++j) {
        const int32_t y = W.beam[j].node;
        // lm(y + c) <= lm(y) + bonus + lm_weight * (largest LM log-prob after y's context)
        W.lmub[j] = W.lm[y] + (P.bonus + (P.use_lm ? P.lm_weight * W.ub[y] : 0.0));
        W.heads[j] = W.totals[j] + W.lmub[j];
        // The walk's bound: with an LM, what an extension the LM backs off to unigrams for scores, less the
        // class's walk key; the classes the LM knows after y's last word are tried apart.
        W.heads2[j] = P.use_lm ? W.totals[j] + W.lm[y] + (P.bonus + P.lm_weight * W.a0[y]) : W.heads[j];
        max_head_ = std::max(max_head_, W.heads2[j]);
        // lm_weight * ln p <= 0: what any extension of slot j scores, less its class's log-prob, is at most this.
        max_head_group_ = std::max(max_head_group_, W.totals[j] + W.lm[y] + P.bonus);
      }
      for (int32_t j = 0; j < n; ++j) extend(row, j, final_filter);
    }

    // Prune: drop -inf and what falls below the bound, order, keep the beam_width best.
    const double b = bound();
    W.sel.clear();
    for (int32_t k = 0; k < static_cast<int32_t>(W.pool.size()); ++k) {
      const double s = W.pool[k].score;
      if (s != kNegInf && s >= b) W.sel.push_back(k);
    }
    auto cmp = [this](int32_t a, int32_t b2) { return ranks_before(a, b2); };
    if (static_cast<int64_t>(W.sel.size()) > P.beam_width) {
      std::nth_element(W.sel.begin(), W.sel.begin() + (P.beam_width - 1), W.sel.end(), cmp);
      W.sel.resize(P.beam_width);
    }
    std::sort(W.sel.begin(), W.sel.end(), cmp);

    W.next.clear();
    for (int32_t k : W.sel) {
      const Cand& c = W.pool[k];
      if (c.node >= 0) {
        W.next.push_back(Entry{c.node, c.pb, c.pnb, c.score});
      } else {
        const Entry& par = W.beam[c.slot];
        const int32_t node =
            child(par.node, c.token, c.trie, c.lm, c.lm_answer >= 0 ? &W.lm_answers[c.lm_answer] : nullptr);
        W.next.push_back(Entry{node, c.pb, c.pnb, c.score});
      }
    }
    std::swap(W.beam, W.next);
  }

  // Offers every extension of beam slot j that can still survive; stops early by the bound.
  void extend(const scalar_t* row, int32_t j, bool final_filter) {
    const Entry& e = W.beam[j];
    const int32_t y = e.node;
    const double total = W.totals[j];
    if (total == kNegInf) return;
    const double head = W.heads[j];
    if (!P.use_lm && head + max_lp_ < loose_bound()) return;
    if (P.use_lexicon && P.trie.fanout(W.trie[y]) <= kDirectFanout) {
      const int64_t tn = W.trie[y];
      for (int64_t k = P.trie.offsets[tn]; k < P.trie.offsets[tn + 1]; ++k) {
        const int64_t c = P.trie.labels[k];
        if (!is_allowed(c)) continue;
        try_extend(row, j, c, P.trie.children[k], final_filter);
      }
      if (P.separator >= 0 && tn != 0 && P.trie.is_word[tn] && is_allowed(P.separator)) {
        try_extend(row, j, P.separator, 0, final_filter);
      }
      return;
    }
    if (P.limited() && static_cast<int64_t>(W.allowed.size()) <= kDirectTopK) {
      // A few classes per frame, best first: each tried directly (with an LM, its exact lookup), without the
      // candidate bins or successor lists (building one costs a lookup per LM word, for every new context word).
      for (const int32_t c : W.allowed) {
        if (head + static_cast<double>(row[c]) < loose_bound()) break;  // the rest have lower log-probs
        int64_t ctrie = 0;
        if (P.use_lexicon && !lexicon_child(y, c, &ctrie)) continue;
        try_extend(row, j, c, ctrie, final_filter);
      }
      return;
    }
    const bool split = P.use_lm && W.kmax[y] > 0;
    if (split) {
      // The classes whose LM word follows y's last word in some stored bigram: only these can score above
      // the unigram backoff. Each is bounded by the LM's largest probability after y's context.
      if (++W.seen_id == std::numeric_limits<int32_t>::max()) {
        std::fill(W.seen_stamp.begin(), W.seen_stamp.end(), 0);
        W.seen_id = 1;
      }
      if (static_cast<int64_t>(W.seen_stamp.size()) < P.lm_words) W.seen_stamp.assign(P.lm_words, 0);
      const Workspace::Successors& known = successors(W.ctx[static_cast<size_t>(y) * ctx_cap()]);
      for (const int32_t c : known.classes) {
        W.seen_stamp[P.lm_token_map[c]] = W.seen_id;
        if (!is_allowed(c) || head + static_cast<double>(row[c]) < loose_bound()) continue;
        int64_t ctrie = 0;
        if (P.use_lexicon && !lexicon_child(y, c, &ctrie)) continue;
        try_extend(row, j, c, ctrie, final_filter);
      }
      for (const int32_t gi : known.groups) {
        W.seen_stamp[P.word_list[gi]] = W.seen_id;
        const std::vector<int32_t>& g = group_candidates(row, gi);
        if (g.empty()) continue;
        // One LM lookup for the group: every class of the word scores the same LM term after y.
        double lmv;
        const int32_t answer = lm_query(y, g[0], &lmv);
        const double head_g = W.totals[j] + (W.lm[y] + (P.lm_weight * lmv + P.bonus));
        for (const int32_t c : g) {
          if (head_g + static_cast<double>(row[c]) < loose_bound()) break;
          if (!is_allowed(c)) continue;
          int64_t ctrie = 0;
          if (P.use_lexicon && !lexicon_child(y, c, &ctrie)) continue;
          try_extend(row, j, c, ctrie, final_filter, false, &lmv, answer);
        }
      }
    }
    const double head2 = W.heads2[j];
    if (!W.cand_ready) prepare_candidates(row, loose_bound() - max_head_);
    walk(row, head2, [&](int32_t c) {
      if (split && W.seen_stamp[P.lm_token_map[c]] == W.seen_id) return;
      int64_t ctrie = 0;
      if (P.use_lexicon) {
        if (c == P.separator) {
          const int64_t tn = W.trie[y];
          if (!(tn != 0 && P.trie.is_word[tn])) return;
        } else {
          ctrie = P.trie.child(W.trie[y], c);
          if (ctrie < 0) return;
        }
      }
      // Not a class the LM knows after y's last word: the LM backs off to its unigram (no lookup needed).
      try_extend(row, j, c, ctrie, final_filter, /*unigram=*/P.use_lm && (split || W.kmax[y] == 0));
    });
  }

  const Workspace::Successors& successors(int64_t v) {
    if (v >= static_cast<int64_t>(W.successors.size())) W.successors.resize(v + 1);
    Workspace::Successors& out = W.successors[v];
    if (!out.known) {
      for (int64_t i = 0; i < P.n_words; ++i) {
        // The key of the bigram (v, w) folds w, then v.
        if (P.lm.find(ctc::mix(ctc::mix(ctc::kSeed, P.word_list[i]), v)) < 0) continue;
        if (P.word_off[i + 1] - P.word_off[i] == 1) {
          out.classes.push_back(P.word_cls[P.word_off[i]]);
        } else {
          out.groups.push_back(static_cast<int32_t>(i));
        }
      }
      out.known = true;
    }
    return out;
  }

  // The classes of shared word i whose log-prob can still make an extension survive this frame (the bound
  // only rises), log-prob descending; built once per frame.
  const std::vector<int32_t>& group_candidates(const scalar_t* row, int32_t i) {
    if (static_cast<int64_t>(W.group_stamp.size()) < P.n_words) {
      W.group_stamp.resize(P.n_words, 0);
      W.group_cand.resize(P.n_words);
    }
    std::vector<int32_t>& g = W.group_cand[i];
    if (W.group_stamp[i] == W.stamp) return g;
    W.group_stamp[i] = W.stamp;
    g.clear();
    const double floor = loosen(loose_bound() - max_head_group_);
    for (int32_t k = P.word_off[i]; k < P.word_off[i + 1]; ++k) {
      const int32_t c = P.word_cls[k];
      if (static_cast<double>(row[c]) >= floor) g.push_back(c);
    }
    std::sort(g.begin(), g.end(), by_logprob(row));
    return g;
  }

  // Whether the lexicon allows y + c; its trie node in *ctrie.
  bool lexicon_child(int32_t y, int64_t c, int64_t* ctrie) const {
    const int64_t tn = W.trie[y];
    if (c == P.separator) {
      *ctrie = 0;
      return tn != 0 && P.trie.is_word[tn];
    }
    *ctrie = P.trie.child(tn, c);
    return *ctrie >= 0;
  }

  // unigram: the LM is known to back off to c's unigram after y (lm_logprob's level 0, computed the same way).
  // known_lm: lm_logprob(y, c), already computed (the group of c's LM word), as answer known_answer.
  void try_extend(const scalar_t* row, int32_t j, int64_t c, int64_t ctrie, bool final_filter, bool unigram = false,
                  const double* known_lm = nullptr, int32_t known_answer = -1) {
    for (int32_t k = W.kid_head[j]; k >= 0; k = W.kid_next[k]) {
      if (W.pool[k].token == c) return;  // y + c is in the beam: its extension was merged above
    }
    if (final_filter && !(c != P.separator && ctrie != 0 && P.trie.is_word[ctrie])) return;
    const Entry& e = W.beam[j];
    const int32_t y = e.node;
    const double a = (c == W.token[y] ? e.pb : W.totals[j]) + static_cast<double>(row[c]);
    if (a + W.lmub[j] < loose_bound()) return;
    double term = P.bonus;
    int32_t answer = -1;
    if (P.use_lm) {
      double lp_lm;
      if (known_lm != nullptr) {
        lp_lm = *known_lm;
        answer = known_answer;
      } else if (unigram) {
        lp_lm = lm_unigram_logprob(y, c);
        answer = kUnigramAnswer;
      } else {
        answer = lm_query(y, c, &lp_lm);
      }
      term = P.lm_weight * lp_lm + P.bonus;
    }
    const double lmc = W.lm[y] + term;
    const double s = a + lmc;
    if (s == kNegInf || s < bound()) return;
    W.pool.push_back(Cand{-1, j, static_cast<int32_t>(c), static_cast<int32_t>(ctrie), kNegInf, a, s, lmc, answer});
    offer(s);
  }

  // Beam order: score descending, ties by token sequence ascending.
  bool ranks_before(int32_t a, int32_t b) {
    const Cand& x = W.pool[a];
    const Cand& y = W.pool[b];
    if (x.score != y.score) return x.score > y.score;
    if (a == b) return false;
    sequence_of(x, W.seq_a);
    sequence_of(y, W.seq_b);
    return std::lexicographical_compare(W.seq_a.begin(), W.seq_a.end(), W.seq_b.begin(), W.seq_b.end());
  }

  void sequence_of(const Cand& c, std::vector<int64_t>& out) const {
    out.clear();
    if (c.node < 0) out.push_back(c.token);
    for (int32_t n = c.node >= 0 ? c.node : W.beam[c.slot].node; n > 0; n = W.parent[n]) out.push_back(W.token[n]);
    std::reverse(out.begin(), out.end());
  }

  // ---- output --------------------------------------------------------------------------------------------
  // The first N hypotheses of the beam, each with the frames and confidences of its most probable alignment;
  // false when one has none (see RowStatus::kNoAlignment).
  bool write(int64_t b, const scalar_t* lp, int64_t len) {
    const int64_t N = P.nbest, T = P.T;
    const int64_t count = std::min<int64_t>(N, static_cast<int64_t>(W.beam.size()));
    bool aligned = true;
    for (int64_t h = 0; h < N; ++h) {
      const int64_t o = b * N + h;
      int64_t* tok = P.tokens + o * T;
      int64_t* frm = P.frames + o * T;
      float* conf = P.confidences + o * T;
      int64_t L = -1;
      if (h < count) {
        const Entry& e = W.beam[h];
        W.out_tok.clear();
        for (int32_t n = e.node; n > 0; n = W.parent[n]) W.out_tok.push_back(W.token[n]);
        std::reverse(W.out_tok.begin(), W.out_tok.end());
        L = static_cast<int64_t>(W.out_tok.size());
        std::copy(W.out_tok.begin(), W.out_tok.end(), tok);
        W.align_a.resize(2 * L + 1);
        W.align_b.resize(2 * L + 1);
        W.align_steps.resize(len * ctc_align::row_bytes(L));
        aligned &= ctc_align::align_sequential(lp, P.C, len, P.blank, tok, L, W.align_a.data(), W.align_b.data(),
                                               W.align_steps.data(), frm, conf);
        const double acoustic = log_add(e.pb, e.pnb);
        P.scores[o] = acoustic + W.lm[e.node];
        P.acoustic[o] = acoustic;
        P.lm_scores[o] = W.lm[e.node];
      } else {
        P.scores[o] = P.acoustic[o] = P.lm_scores[o] = kNegInf;
      }
      P.out_lengths[o] = L;
      for (int64_t i = std::max<int64_t>(L, 0); i < T; ++i) {
        tok[i] = -1;
        frm[i] = -1;
        conf[i] = 0.0f;
      }
    }
    return aligned;
  }

  double max_lp_ = kNegInf;    // the frame's highest non-blank log-prob
  std::vector<scalar_t> chunk_max_;  // the frame's highest non-blank log-prob in each chunk of kChunk classes
  double max_head_ = kNegInf;  // the largest heads[j] of the frame
  double max_head_group_ = kNegInf;  // the largest totals[j] + lm + bonus of the frame
  double floor_ = kNegInf;     // candidate classes below this log-prob cannot survive the frame
  bool cand_complete_ = false;
};

}  // namespace ctc_cpu
}  // namespace crnn_fast
