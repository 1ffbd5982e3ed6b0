// Torch glue of the CUDA CTC prefix beam search (csrc/cuda/ctc_beam_search_kernel.cu): the op's arguments read
// as the CPU op reads them (csrc/ctc_beam_search_args.h), scratch, device guard, current stream. Host-side checks of the lexicon and LM
// contents read a host copy of those tensors (they are small next to log_probs, and a bad index in them
// must raise, not fault on the device); the per-sequence status comes back in one synchronising copy.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../ctc_beam_search_args.h"
#include "../ctc_lm.h"
#include "ctc_beam_search_kernels.h"

namespace crnn_fast {
namespace {

// Lexicon and LM tensors already checked (their host copies read), by identity: data pointer, size and version
// counter of each tensor as the op reads it (contiguous: the caller's own tensor when it already is), plus the
// arguments the checks depend on. A decoder passes the same device tensors on every call; the checks (a
// device-to-host copy and a scan) then run once. An entry holds references to its tensors, so their memory cannot
// be freed and reused by other tensors while the entry lives. Writes through raw pointers that bypass the version
// counter are not seen: not a supported way to change a lexicon or an LM.
struct Fingerprint {
  at::Tensor hold[4];
  const void* ptr[4] = {};
  int64_t numel[4] = {};
  uint32_t version[4] = {};
  int64_t extra[3] = {};
  double value = 0;  // what the check computed (the LM's largest unigram log10 probability)
  bool same(const Fingerprint& o) const {
    for (int i = 0; i < 4; ++i) {
      if (ptr[i] != o.ptr[i] || numel[i] != o.numel[i] || version[i] != o.version[i]) return false;
    }
    return extra[0] == o.extra[0] && extra[1] == o.extra[1] && extra[2] == o.extra[2];
  }
};

Fingerprint fingerprint(const at::Tensor* t[4], int64_t e0, int64_t e1, int64_t e2) {
  Fingerprint f;
  for (int i = 0; i < 4; ++i) {
    f.hold[i] = *t[i];
    f.ptr[i] = t[i]->data_ptr();
    f.numel[i] = t[i]->numel();
    f.version[i] = t[i]->unsafeGetTensorImpl()->version_counter().current_version();
  }
  f.extra[0] = e0;
  f.extra[1] = e1;
  f.extra[2] = e2;
  return f;
}

class CheckedCache {
 public:
  bool find(const Fingerprint& f, double* value) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Fingerprint& e : entries_) {
      if (e.same(f)) {
        *value = e.value;
        return true;
      }
    }
    return false;
  }
  void add(const Fingerprint& f) {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= 4) entries_.erase(entries_.begin());
    entries_.push_back(f);
  }

 private:
  std::mutex mu_;
  std::vector<Fingerprint> entries_;
};

CheckedCache& trie_cache() {
  static CheckedCache c;
  return c;
}
CheckedCache& lm_cache() {
  static CheckedCache c;
  return c;
}

struct CudaSearch {
  struct Guard {
    c10::cuda::CUDAGuard device;
    explicit Guard(const at::Tensor& log_probs) : device(cuda_device(log_probs)) {}
    static at::Device cuda_device(const at::Tensor& log_probs) {
      TORCH_CHECK(log_probs.is_cuda(), "log_probs must be a CUDA tensor, got ", log_probs.device());
      return log_probs.device();
    }
  };
  static constexpr int64_t kMaxLMOrder = kCtcBeamCudaMaxLMOrder;
  static beam_args::BeamResult search(const beam_args::Inputs& in);
};

beam_args::BeamResult CudaSearch::search(const beam_args::Inputs& in) {
  const int64_t B = in.opt.B, T = in.opt.T, C = in.opt.C;
  const int64_t blank = in.opt.blank, beam_width = in.opt.beam_width;
  TORCH_CHECK(beam_width <= kCtcBeamCudaMaxBeam, "beam_width must be <= ", kCtcBeamCudaMaxBeam,
              " on CUDA, got ", beam_width, " (use backend='cpu' for wider beams)");
  TORCH_CHECK(B < (1LL << 31), "log_probs has too many sequences for the CUDA kernel (B=", B, ")");
  TORCH_CHECK(1 + T * beam_width < (1LL << 31), "T * beam_width too large for the CUDA kernel");
  const at::Tensor& log_probs = in.log_probs;

  CtcBeamSearchParams P{};
  beam_args::set_options(in.opt, &P);
  P.log_probs = log_probs.data_ptr();
  P.is_double = log_probs.scalar_type() == at::kDouble;
  P.lengths = in.lengths.data_ptr<int64_t>();

  if (in.has_lexicon) {  // contents checked on a host copy
    const at::Tensor* trie_t[4] = {&in.trie_offsets, &in.trie_labels, &in.trie_children, &in.trie_is_word};
    Fingerprint trie_fp = fingerprint(trie_t, C, blank, in.opt.separator);
    double unused = 0;
    if (!trie_cache().find(trie_fp, &unused)) {
      const at::Tensor off_h = in.trie_offsets.cpu(), lab_h = in.trie_labels.cpu(), chi_h = in.trie_children.cpu();
      beam_checks::check_trie_contents(off_h.data_ptr<int64_t>(), lab_h.data_ptr<int64_t>(),
                                       chi_h.data_ptr<int64_t>(), in.trie_sizes, C, blank, in.word_separator);
      trie_cache().add(trie_fp);
    }
    P.use_lexicon = true;
    P.trie_offsets = in.trie_offsets.data_ptr<int64_t>();
    P.trie_labels = in.trie_labels.data_ptr<int64_t>();
    P.trie_children = in.trie_children.data_ptr<int64_t>();
    P.trie_is_word = in.trie_is_word.data_ptr<bool>();
  }

  if (in.has_lm) {  // contents checked on a host copy
    const at::Tensor* lm_t[4] = {&in.lm_keys, &in.lm_values, &in.lm_buckets, &in.lm_token_map};
    Fingerprint lm_fp = fingerprint(lm_t, C, blank, 0);
    if (!lm_cache().find(lm_fp, &lm_fp.value)) {
      const at::Tensor keys_h = in.lm_keys.cpu(), vals_h = in.lm_values.cpu(), bk_h = in.lm_buckets.cpu();
      const at::Tensor filter_h = in.lm_filter.cpu(), tm_h = in.lm_token_map.cpu();
      beam_checks::check_lm_contents(bk_h.data_ptr<int64_t>(), vals_h.data_ptr<double>(), tm_h.data_ptr<int64_t>(),
                                     in.lm_sizes, C, blank);
      const ctc::LMView lm = beam_args::lm_view(keys_h, vals_h, bk_h, filter_h, in.lm_sizes);
      const int64_t empty = lm.find(ctc::kSeed);  // the row of the empty n-gram, if any
      lm_fp.value = empty >= 0 ? lm.log10_max_next(empty) : 0.0;
      lm_cache().add(lm_fp);
    }
    P.lm_max_unigram = lm_fp.value;
    P.lm = beam_args::lm_view(in.lm_keys, in.lm_values, in.lm_buckets, in.lm_filter, in.lm_sizes);
    P.lm_token_map = in.lm_token_map.data_ptr<int64_t>();
  }

  const beam_args::Outputs out(in);
  out.set_pointers(&P);
  const auto long_opts = log_probs.options().dtype(at::kLong);
  const auto dbl_opts = log_probs.options().dtype(at::kDouble);
  // status and bad_frames side by side: one copy to the host
  at::Tensor status_frames = at::empty({2, B}, log_probs.options().dtype(at::kInt));
  int64_t n_nodes = 0, n_ctx = 0, n_acc = 0, n_meta = 0, n_alpha = 0, n_steps = 0;
  ctc_beam_search_scratch_sizes(B, T, beam_width, P.lm_order, P.use_lm, &n_nodes, &n_ctx, &n_acc, &n_meta, &n_alpha,
                                &n_steps);
  at::Tensor nodes = at::empty({n_nodes}, log_probs.options().dtype(at::kInt));
  at::Tensor lm_ctx = at::empty({n_ctx}, long_opts);
  at::Tensor lm_acc = at::empty({n_acc}, dbl_opts);
  at::Tensor lm_meta = at::empty({n_meta}, log_probs.options().dtype(at::kInt));
  at::Tensor align_alpha = at::empty({n_alpha}, dbl_opts);
  at::Tensor align_steps = at::empty({n_steps}, log_probs.options().dtype(at::kByte));
  P.status = status_frames.data_ptr<int32_t>();
  P.bad_frames = P.status + B;
  P.nodes = nodes.data_ptr<int32_t>();
  P.lm_ctx = lm_ctx.data_ptr<int64_t>();
  P.lm_acc = lm_acc.data_ptr<double>();
  P.lm_meta = lm_meta.data_ptr<int32_t>();
  P.align_alpha = align_alpha.data_ptr<double>();
  P.align_steps = align_steps.data_ptr<uint8_t>();

  const cudaError_t err = launch_ctc_beam_search(P, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "ctc_beam_search CUDA launch failed: ", cudaGetErrorString(err));
  const at::Tensor status_h = status_frames.cpu();  // synchronises
  const int32_t* st = status_h.data_ptr<int32_t>();
  const int32_t* bad_frame = st + B;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(st[b] != 2, "lengths[", b, "] must be in [0, T=", T, "]");
    TORCH_CHECK(st[b] != 1, "log_probs must not contain NaN or +inf (sequence ", b, " does)");
    TORCH_CHECK(st[b] != 3, "log_probs must give some class a non-zero probability at every frame: frame ",
                bad_frame[b], " of sequence ", b, " is -inf for every class");
    TORCH_CHECK(st[b] != 4, "ctc_beam_search: a hypothesis of sequence ", b,
                " has no alignment whose log-probability sums to more than -inf (log_probs too close to -inf)");
  }
  return out.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(crnn_fast, CUDA, m) { m.impl("ctc_beam_search", &beam_args::ctc_beam_search_op<CudaSearch>); }

}  // namespace crnn_fast
