"""crnn_fast::ctc_beam_search on CUDA (csrc/cuda/ctc_beam_search_kernel.cu) against the CPU op and the reference.

Without a GPU: the CUDA kernel is registered when the extension was built with nvcc, and the kernel's own
source runs on the CPU through an emulation (tests/ops/ctc_beam_search_emu.cpp: a std::thread per CUDA
thread, std::barrier for __syncthreads), compiled here with g++ and compared with the CPU op.
With a GPU (`-m cuda`): the real kernel against the CPU op and the reference over the shape grid.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import shutil
import subprocess
import tempfile

import pytest
import torch

from crnn_fast import _ext
from crnn_fast.decoding import compile_trie
from crnn_fast.formats.lexicon import LexiconTrie
from crnn_fast.ops.ctc_beam_search import BeamSearchOutput, ctc_beam_search
from crnn_fast.reference.ctc import ctc_alignment_ref, ctc_beam_search_ref

pytestmark = pytest.mark.skipif(not _ext.HAS_EXTENSION, reason=f"crnn_fast._C not built: {_ext.EXTENSION_ERROR}")

NEG_INF = float("-inf")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------

_LM_CACHE: dict = {}


# The input generators of the CPU op's tests (tests/ops is on sys.path under pytest's default import mode).
from ctc_brute_force import cat_log_probs, dyadic_log_probs  # noqa: E402
from test_ctc_beam_search import (  # noqa: E402
    assert_frames_are_best_alignments,
    random_lengths,
    random_lm,
    random_log_probs,
    random_words,
)


def assert_matches_reference(out, ref, log_probs, lengths, *, blank=0, rtol=1e-9):
    """Same n-best lists (tokens, frames) as the reference, scores within rtol."""
    B, nbest = out.token_lengths.shape
    for b in range(B):
        hyps = ref[b]
        assert int((out.token_lengths[b] >= 0).sum()) == len(hyps), b
        for n, h in enumerate(hyps):
            L = int(out.token_lengths[b, n])
            assert tuple(out.tokens[b, n, :L].tolist()) == h.tokens, (b, n)
            assert tuple(out.token_frames[b, n, :L].tolist()) == h.frames, (b, n)
            for name, value in (("scores", h.score), ("acoustic_scores", h.acoustic_score), ("lm_scores", h.lm_score)):
                g = float(getattr(out, name)[b, n])
                assert g == value or abs(g - value) <= rtol * max(1.0, abs(value)), (b, n, name, g, value)
            alignment = ctc_alignment_ref(log_probs[b], h.tokens, int(lengths[b]), blank)
            conf = [math.exp(v) for v in alignment.token_logprobs]
            torch.testing.assert_close(
                out.token_confidences[b, n, :L], torch.tensor(conf, dtype=torch.float32), rtol=1e-6, atol=1e-7
            )


def case_args(C, mode, seed, *, K):
    """High-level keyword arguments of ctc_beam_search for a lexicon/LM mode."""
    args = {}
    if mode in ("lexicon", "both"):
        sep = 1 if C >= 96 else None
        args["lexicon"] = random_words(C, 200, seed, exclude=(sep,) if sep else ())
        args["word_separator"] = sep
    if mode in ("lm", "both"):
        if C not in _LM_CACHE:
            _LM_CACHE[C] = random_lm(C, C)
        args.update(lm=_LM_CACHE[C], lm_weight=0.7, insertion_bonus=0.4)
    return args


def peaked_log_probs(B, T, C, seed, words, dtype=torch.float32):
    """Random log-probs peaked towards the tokens of lexicon words, so that words get finished."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(B, T, C, generator=g, dtype=torch.float64)
    if words:
        flat = [c for w in words[:20] for c in w]
        for b in range(B):
            for t in range(T):
                if t % 2 == 0:
                    logits[b, t, flat[(t // 2 + b) % len(flat)]] += 4.0
                else:
                    logits[b, t, 0] += 3.0
    return logits.log_softmax(-1).to(dtype)


def op_args(
    log_probs,
    lengths,
    *,
    blank=0,
    beam_width=10,
    nbest=1,
    top_k=None,
    beam_threshold=None,
    blank_skip_threshold=None,
    token_min_logp=None,
    lexicon=None,
    word_separator=None,
    lm=None,
    lm_weight=0.0,
    insertion_bonus=0.0,
):
    """The positional arguments of torch.ops.crnn_fast.ctc_beam_search, as the python face builds them."""
    trie = (None,) * 4
    if lexicon is not None:
        trie = tuple(compile_trie(lexicon if isinstance(lexicon, LexiconTrie) else LexiconTrie(lexicon)))
    lm_args = (None, None, None, None, None, 1, -1)
    if lm is not None:
        t = lm.tensors
        lm_args = (t.keys, t.values, t.buckets, t.filter, t.token_map, t.order, t.bos)
    return (
        log_probs,
        lengths,
        blank,
        beam_width,
        nbest,
        top_k,
        beam_threshold,
        blank_skip_threshold,
        token_min_logp,
        *trie,
        word_separator,
        *lm_args,
        lm_weight,
        insertion_bonus,
    )


@functools.lru_cache(maxsize=1)
def emu_library():
    """tests/ops/ctc_beam_search_emu.cpp compiled with g++ (skips when there is no g++ or CUDA header)."""
    cxx = shutil.which("g++")
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    include = os.path.join(cuda_home, "include")
    if cxx is None or not os.path.exists(os.path.join(include, "cuda_runtime_api.h")):
        pytest.skip("the CUDA kernel emulation needs g++ and the CUDA toolkit headers")
    out = os.path.join(tempfile.mkdtemp(prefix="crnn_fast_emu_"), "ctc_beam_search_emu.so")
    src = os.path.join(HERE, "ctc_beam_search_emu.cpp")
    subprocess.run(
        [cxx, "-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", f"-I{include}", src, "-o", out],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(out)
    lib.emu_ctc_beam_search.restype = ctypes.c_int
    return lib


def _ptr(x):
    return ctypes.c_void_p(x.data_ptr()) if x is not None else ctypes.c_void_p(0)


def emu_op(
    log_probs,
    lengths,
    blank,
    beam_width,
    nbest,
    top_k,
    beam_threshold,
    blank_skip_threshold,
    token_min_logp,
    trie_offsets,
    trie_labels,
    trie_children,
    trie_is_word,
    word_separator,
    lm_keys,
    lm_values,
    lm_buckets,
    lm_filter,
    lm_token_map,
    lm_order,
    lm_bos,
    lm_weight,
    insertion_bonus,
):
    """The CUDA kernel's source run on the CPU: same parameters as the op, derived as the CUDA glue does."""
    lib = emu_library()
    B, T, C = log_probs.shape
    lp = log_probs if log_probs.dtype in (torch.float32, torch.float64) else log_probs.float()
    lp = lp.contiguous()
    lengths = lengths.contiguous()
    use_top_k = top_k is not None and top_k < C - 1
    use_thr = beam_threshold is not None and math.isfinite(beam_threshold)
    use_floor = token_min_logp is not None and token_min_logp != -math.inf
    use_lm = lm_keys is not None and lm_weight != 0.0
    max_unigram = 0.0
    shift = 63
    if lm_keys is not None:
        nb = lm_buckets.numel() - 1
        shift = 64 - (nb.bit_length() - 1)
        seed = 0x2545F4914F6CDD1D
        seed_signed = seed - (1 << 64) if seed >= 1 << 63 else seed
        hit = (lm_keys == seed_signed).nonzero()
        if len(hit):
            max_unigram = float(lm_values[int(hit[0]), 2])
    outs = (
        torch.empty(B, nbest, T, dtype=torch.int64),
        torch.empty(B, nbest, dtype=torch.int64),
        torch.empty(B, nbest, T, dtype=torch.int64),
        torch.empty(B, nbest, T, dtype=torch.float32),
        torch.empty(B, nbest, dtype=torch.float64),
        torch.empty(B, nbest, dtype=torch.float64),
        torch.empty(B, nbest, dtype=torch.float64),
    )
    status = torch.empty(B, dtype=torch.int32)
    bad_frames = torch.full((B,), -1, dtype=torch.int32)
    c = ctypes
    rc = lib.emu_ctc_beam_search(
        _ptr(lp),
        c.c_int(lp.dtype == torch.float64),
        _ptr(lengths),
        c.c_int64(B),
        c.c_int64(T),
        c.c_int64(C),
        c.c_int64(blank),
        c.c_int64(beam_width),
        c.c_int64(nbest),
        c.c_int(use_top_k),
        c.c_int64(top_k or 0),
        c.c_int(use_thr),
        c.c_double(beam_threshold if use_thr else 0.0),
        c.c_int(blank_skip_threshold is not None),
        c.c_double(math.log(blank_skip_threshold) if blank_skip_threshold is not None else 0.0),
        c.c_int(use_floor),
        c.c_double(token_min_logp if use_floor else 0.0),
        c.c_int(trie_offsets is not None),
        _ptr(trie_offsets),
        _ptr(trie_labels),
        _ptr(trie_children),
        _ptr(trie_is_word),
        c.c_int64(-1 if word_separator is None else word_separator),
        c.c_int(use_lm),
        _ptr(lm_keys),
        _ptr(lm_values),
        c.c_double(max_unigram),
        _ptr(lm_buckets),
        c.c_int(shift),
        _ptr(lm_filter),
        c.c_int64(lm_filter.numel() if lm_filter is not None else 1),
        _ptr(lm_token_map),
        c.c_int(lm_order),
        c.c_int64(lm_bos),
        c.c_double(lm_weight),
        c.c_double(insertion_bonus),
        *(_ptr(x) for x in outs),
        _ptr(status),
        _ptr(bad_frames),
    )
    assert rc == 0, rc
    # What the CUDA glue (csrc/cuda/ctc_beam_search_cuda.cpp) raises for each status.
    for b, code in enumerate(status.tolist()):
        if code == 1:
            raise RuntimeError(f"log_probs must not contain NaN or +inf (sequence {b} does)")
        if code == 3:
            raise RuntimeError(f"log_probs must give some class a non-zero probability at every frame: frame "
                               f"{int(bad_frames[b])} of sequence {b} is -inf for every class")
        assert code == 0, status
    return outs


def assert_same_nbest(got, want, *, rtol=1e-9):
    """Same n-best tokens, lengths and frames; scores within rtol (float64); confidences within fp32 rounding."""
    names = ("tokens", "token_lengths", "token_frames", "token_confidences", "scores", "acoustic_scores", "lm_scores")
    got = [x.cpu() for x in got]
    want = [x.cpu() for x in want]
    for name, g, w in zip(names, got, want):
        if name in ("tokens", "token_lengths", "token_frames"):
            assert torch.equal(g, w), (name, g, w)
        elif name == "token_confidences":
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)
        else:
            fin = torch.isfinite(w)
            assert torch.equal(fin, torch.isfinite(g)), (name, g, w)
            torch.testing.assert_close(g[fin], w[fin], rtol=rtol, atol=rtol)


# ---------------------------------------------------------------------------------------------------------
# without a GPU
# ---------------------------------------------------------------------------------------------------------


def test_fake_impl_on_meta_tensors():
    lp = torch.empty(3, 7, 11, device="meta")
    lengths = torch.empty(3, dtype=torch.int64, device="meta")
    out = torch.ops.crnn_fast.ctc_beam_search(
        lp,
        lengths,
        0,
        4,
        2,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        1,
        -1,
        0.0,
        0.0,
    )
    assert [tuple(x.shape) for x in out] == [(3, 2, 7), (3, 2), (3, 2, 7), (3, 2, 7), (3, 2), (3, 2), (3, 2)]
    assert [x.dtype for x in out] == [torch.int64] * 3 + [torch.float32] + [torch.float64] * 3


@pytest.mark.parametrize("kind", ["random", "dyadic"])
def test_emulated_kernel_frames_equal_the_forced_alignment(kind):
    # The kernel's block-parallel alignment against enumeration; dyadic values tie exactly (earliest wins).
    B, T, C = 3, 7, 4
    lp = random_log_probs(B, T, C, seed=5) if kind == "random" else dyadic_log_probs(B, T, C, seed=5)
    lengths = random_lengths(B, T, seed=5)
    for kwargs in ({}, {"lexicon": [[1, 2], [2, 2], [3], [1, 3, 1]]}):
        out = BeamSearchOutput(*emu_op(*op_args(lp, lengths, beam_width=8, nbest=5, **kwargs)))
        assert_frames_are_best_alignments(out, lp, lengths)
        assert_same_nbest(out, ctc_beam_search(lp, lengths, beam_width=8, nbest=5, backend="cpu", **kwargs))


def test_emulated_kernel_issue_example():
    lp = cat_log_probs()
    for K in (1, 10, 200):
        for kwargs in ({}, {"lexicon": [[2, 1, 4], [2, 1, 3], [1, 2, 4]]}):
            out = emu_op(*op_args(lp, torch.tensor([10]), beam_width=K, **kwargs))
            assert out[2][0, 0, :3].tolist() == [2, 5, 8]
            assert_same_nbest(out, ctc_beam_search(lp, beam_width=K, backend="cpu", **kwargs))


def test_emulated_kernel_rejects_an_impossible_frame():
    lp = random_log_probs(2, 6, 5, seed=0)
    lp[1, 3] = NEG_INF
    with pytest.raises(RuntimeError, match="frame 3 of sequence 1 is -inf for every class"):
        emu_op(*op_args(lp, torch.tensor([6, 6]), beam_width=4))
    emu_op(*op_args(lp, torch.tensor([6, 3]), beam_width=4))  # past lengths[b]: not looked at


# (C, T, K, top_k, B, mode) for the emulation: small, since every CUDA thread is an OS thread here.
EMU_CASES = [
    (37, 1, 1, None, 2, "plain"),
    (37, 26, 4, None, 2, "plain"),
    (37, 26, 16, None, 1, "plain"),
    (96, 12, 64, None, 1, "plain"),
    (96, 26, 4, 5, 2, "plain"),
    (37, 26, 4, None, 2, "lexicon"),
    (96, 20, 8, None, 1, "lexicon"),
    (37, 20, 4, None, 2, "lm"),
    (96, 16, 8, None, 1, "both"),
    (600, 8, 16, None, 1, "plain"),
    (300, 10, 8, None, 1, "lexicon"),
    (6001, 3, 8, None, 1, "plain"),
    (600, 8, 4, 7, 1, "both"),
]


@pytest.mark.parametrize(
    "C,T,K,top_k,B,mode", EMU_CASES, ids=[f"C{c}-T{t}-K{k}-top{tk}-{m}" for c, t, k, tk, _, m in EMU_CASES]
)
def test_emulated_kernel_matches_cpu_op(C, T, K, top_k, B, mode):
    kwargs = case_args(C, mode, seed=C + K, K=K)
    words = kwargs.get("lexicon")
    lp = peaked_log_probs(B, T, C, seed=C + T + K, words=words) if words else random_log_probs(B, T, C, seed=C + T)
    lengths = random_lengths(B, T, seed=K)
    args = op_args(lp, lengths, beam_width=K, nbest=min(K, 4), top_k=top_k, **kwargs)
    assert_same_nbest(emu_op(*args), torch.ops.crnn_fast.ctc_beam_search(*args))


@pytest.mark.parametrize(
    "opts",
    [
        dict(beam_threshold=3.0),
        dict(blank_skip_threshold=0.5),
        dict(beam_threshold=0.0),
        dict(token_min_logp=-3.0),
        dict(token_min_logp=-2.0, top_k=5),
        dict(token_min_logp=math.inf),
        dict(nbest=20),
        dict(dtype=torch.float64),
        dict(ties=True),
    ],
)
def test_emulated_kernel_options(opts):
    opts = dict(opts)
    dtype = opts.pop("dtype", torch.float32)
    ties = opts.pop("ties", False)
    B, T, C, K = 2, 16, 37, 8
    lp = random_log_probs(B, T, C, seed=5, dtype=dtype)
    if ties:  # coarse values: equal scores, so the tie order (tokens ascending) decides
        lp = (lp * 2).round() / 2
    lengths = random_lengths(B, T, seed=3)
    nbest = opts.pop("nbest", 4)
    args = op_args(lp, lengths, beam_width=K, nbest=nbest, **opts)
    assert_same_nbest(emu_op(*args), torch.ops.crnn_fast.ctc_beam_search(*args))


# token_min_logp on wide rows: the allowed classes are counted, and may be fewer than the head (K + 8) or top_k
# (the cases that compare the whole beam, nbest=K, differ from the search without the floor), or more than the
# head (C 600 K 16: 32-34 allowed, the radix select over the allowed classes).
EMU_FLOOR_CASES = [
    # C, T, K, top_k, floor, mode
    (600, 2, 32, None, -4.0, "plain"),
    (600, 3, 16, None, -5.0, "plain"),
    (600, 3, 8, 7, -4.0, "both"),
    (6001, 3, 8, None, -5.0, "lm"),
]


@pytest.mark.parametrize("C,T,K,top_k,floor,mode", EMU_FLOOR_CASES)
def test_emulated_kernel_token_min_logp(C, T, K, top_k, floor, mode):
    kwargs = case_args(C, mode, seed=C + K, K=K)
    lp = random_log_probs(1, T, C, seed=C + T + K)
    lengths = torch.tensor([T])
    args = op_args(lp, lengths, beam_width=K, nbest=K, top_k=top_k, token_min_logp=floor, **kwargs)
    assert_same_nbest(emu_op(*args), torch.ops.crnn_fast.ctc_beam_search(*args))


# ---------------------------------------------------------------------------------------------------------
# with a GPU
# ---------------------------------------------------------------------------------------------------------

GRID = [
    (C, T, K, mode)
    for C in (37, 96, 6001)
    for T in (1, 26, 400)
    for K in (1, 4, 16, 64)
    for mode in ("plain", "lexicon", "lm", "both")
]


@pytest.mark.cuda
@pytest.mark.parametrize("C,T,K,mode", GRID, ids=[f"C{c}-T{t}-K{k}-{m}" for c, t, k, m in GRID])
def test_cuda_matches_cpu_op(C, T, K, mode):
    B = 3
    kwargs = case_args(C, mode, seed=C + K, K=K)
    words = kwargs.get("lexicon")
    lp = peaked_log_probs(B, T, C, seed=C + T + K, words=words) if words else random_log_probs(B, T, C, seed=C + T)
    lengths = random_lengths(B, T, seed=K)
    # without top_k the CPU op's work at C=6001, T=400, K=64 is large but fine; keep the grid complete
    args = op_args(lp, lengths, beam_width=K, nbest=min(K, 5), **kwargs)
    want = torch.ops.crnn_fast.ctc_beam_search(*args)
    cuda_args = tuple(x.cuda() if isinstance(x, torch.Tensor) else x for x in args)
    got = torch.ops.crnn_fast.ctc_beam_search(*cuda_args)
    assert got[0].is_cuda
    assert_same_nbest(got, want)
    if words:  # the lexicon is never violated
        sep = kwargs.get("word_separator")
        allowed = {tuple(w) for w in words}
        tokens, lens = got[0].cpu(), got[1].cpu()
        for b in range(B):
            for n in range(tokens.shape[1]):
                L = int(lens[b, n])
                if L <= 0:
                    continue
                seq = tokens[b, n, :L].tolist()
                parts = [seq] if sep is None else _split(seq, sep)
                assert all(tuple(p) in allowed for p in parts), (b, n, seq)


def _split(seq, sep):
    out, cur = [], []
    for c in seq:
        if c == sep:
            out.append(cur)
            cur = []
        else:
            cur.append(c)
    out.append(cur)
    return out


REF_CASES = [
    (37, 26, 4, None, "plain"),
    (96, 26, 16, None, "both"),
    (96, 400, 4, 8, "lexicon"),
    (6001, 26, 16, 16, "plain"),
    (6001, 26, 4, None, "lm"),
]


@pytest.mark.cuda
@pytest.mark.parametrize("C,T,K,top_k,mode", REF_CASES, ids=[f"C{c}-T{t}-K{k}-{m}" for c, t, k, _, m in REF_CASES])
def test_cuda_matches_reference(C, T, K, top_k, mode):
    B = 2
    kwargs = case_args(C, mode, seed=C + K, K=K)
    words = kwargs.get("lexicon")
    lp = peaked_log_probs(B, T, C, seed=C + T + K, words=words) if words else random_log_probs(B, T, C, seed=C + T)
    lengths = random_lengths(B, T, seed=K)
    out = ctc_beam_search(lp.cuda(), lengths, beam_width=K, top_k=top_k, nbest=min(K, 5), backend="cuda", **kwargs)
    assert out.tokens.is_cuda
    ref = ctc_beam_search_ref(lp, lengths, beam_width=K, top_k=top_k, nbest=min(K, 5), **kwargs)
    assert_matches_reference(type(out)(*(x.cpu() for x in out)), ref, lp, lengths)


@pytest.mark.cuda
@pytest.mark.parametrize(
    "opts",
    [
        dict(beam_threshold=3.0),
        dict(blank_skip_threshold=0.5),
        dict(top_k=3),
        dict(token_min_logp=-4.0),
        dict(token_min_logp=-3.0, top_k=6),
        dict(nbest=40),
        dict(dtype=torch.float64),
        dict(dtype=torch.float16),
        dict(ties=True),
        dict(noncontiguous=True),
    ],
)
def test_cuda_options(opts):
    opts = dict(opts)
    dtype = opts.pop("dtype", torch.float32)
    ties = opts.pop("ties", False)
    noncontig = opts.pop("noncontiguous", False)
    B, T, C, K = 5, 40, 96, 16
    lp = random_log_probs(B, T, C, seed=9, dtype=dtype)
    if ties:
        lp = (lp * 2).round() / 2
    lengths = random_lengths(B, T, seed=4)
    nbest = opts.pop("nbest", 4)
    args = op_args(lp, lengths, beam_width=K, nbest=nbest, **opts)
    want = torch.ops.crnn_fast.ctc_beam_search(*args)
    lp_cuda = lp.cuda()
    if noncontig:
        lp_cuda = lp_cuda.transpose(0, 1).contiguous().transpose(0, 1)
    cuda_args = (lp_cuda,) + tuple(x.cuda() if isinstance(x, torch.Tensor) else x for x in args[1:])
    assert_same_nbest(torch.ops.crnn_fast.ctc_beam_search(*cuda_args), want)


@pytest.mark.cuda
def test_cuda_bad_input_raises():
    lp = random_log_probs(2, 5, 11, seed=1).cuda()
    lengths = torch.tensor([5, 5])
    bad = lp.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ctc_beam_search(bad, lengths, beam_width=4, backend="cuda")
    with pytest.raises(RuntimeError, match="beam_width"):
        ctc_beam_search(lp, lengths, beam_width=1000, backend="cuda")
    out = ctc_beam_search(lp, torch.tensor([0, 5]), beam_width=4, backend="cuda")
    assert int(out.token_lengths[0, 0]) == 0 and float(out.scores[0, 0]) == 0.0
