import pytest
import torch

import crnn_fast
from crnn_fast import _ext
from crnn_fast.reference import ctc_greedy_ref

needs_extension = pytest.mark.skipif(not _ext.HAS_EXTENSION, reason=f"crnn_fast._C not built: {_ext.EXTENSION_ERROR}")
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _inputs(B, T, C, dtype, device="cpu", peaked=False):
    logits = torch.randn(B, T, C, dtype=torch.float64) * (4.0 if peaked else 1.0)
    log_probs = logits.log_softmax(-1).to(device=device, dtype=dtype)
    lengths = torch.randint(0, T + 1, (B,))
    lengths[0] = T
    return log_probs, lengths.to(device)


def _assert_same(got, expected):
    for name, g, e in zip(got._fields, got, expected):
        assert g.dtype == e.dtype, name
        assert g.device == e.device, name
        if g.dtype.is_floating_point:
            torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-5, msg=name)
        else:
            assert torch.equal(g, e), name


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T, C", [(1, 1, 2), (1, 26, 37), (5, 13, 96), (64, 26, 37), (3, 400, 6001), (2, 7, 1)])
def test_cpu_matches_reference(dtype, B, T, C):
    log_probs, lengths = _inputs(B, T, C, dtype)
    blank = min(C - 1, 0 if C < 5 else 3)
    got = crnn_fast.ctc_greedy(log_probs, lengths, blank, backend="cpu")
    _assert_same(got, ctc_greedy_ref(log_probs, lengths, blank))


@needs_extension
def test_cpu_non_contiguous_and_ties():
    log_probs, lengths = _inputs(4, 11, 9, torch.float32)
    strided = log_probs.transpose(0, 1).contiguous().transpose(0, 1)
    assert not strided.is_contiguous()
    _assert_same(crnn_fast.ctc_greedy(strided, lengths, backend="cpu"), ctc_greedy_ref(log_probs, lengths))
    tied = torch.zeros(2, 5, 4)  # every class ties: argmax picks class 0 = blank, so nothing is emitted
    out = crnn_fast.ctc_greedy(tied, backend="cpu")
    assert out.token_lengths.tolist() == [0, 0]
    _assert_same(out, ctc_greedy_ref(tied))


@needs_extension
def test_cpu_handcrafted_collapse():
    # frames: a a - a b b - - c  → "a a b c" with blank=0, a=1, b=2, c=3
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    log_probs = torch.full((1, len(path), 4), -10.0)
    for t, k in enumerate(path):
        log_probs[0, t, k] = -0.01 * (t + 1)
    out = crnn_fast.ctc_greedy(log_probs, backend="cpu")
    assert out.tokens[0, : out.token_lengths[0]].tolist() == [1, 1, 2, 3]
    assert out.token_frames[0, :4].tolist() == [0, 3, 4, 8]
    torch.testing.assert_close(out.token_logprobs[0, :4], torch.tensor([-0.01, -0.04, -0.05, -0.09]))
    torch.testing.assert_close(out.path_logprob, torch.tensor([-0.01 * sum(range(1, 10))]))


@needs_extension
def test_opcheck():
    for dtype in (torch.float32, torch.float16):
        log_probs, lengths = _inputs(3, 6, 5, dtype)
        torch.library.opcheck(torch.ops.crnn_fast.ctc_greedy.default, (log_probs, lengths, 0))


@needs_extension
def test_torch_compile_fullgraph():
    op = torch.ops.crnn_fast.ctc_greedy

    @torch.compile(fullgraph=True, backend="aot_eager")
    def decode(log_probs, lengths):
        return op(log_probs.log_softmax(-1), lengths, 0)

    logits, lengths = _inputs(3, 8, 6, torch.float32)
    got = decode(logits, lengths)
    expected = op(logits.log_softmax(-1), lengths, 0)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T, C", [(1, 1, 2), (5, 13, 96), (256, 26, 37), (3, 400, 6001)])
def test_cuda_matches_reference(dtype, B, T, C):
    log_probs, lengths = _inputs(B, T, C, dtype, device="cuda")
    _assert_same(crnn_fast.ctc_greedy(log_probs, lengths, backend="cuda"), ctc_greedy_ref(log_probs, lengths))


@pytest.mark.parametrize("backend", ["ref"] + (["cpu"] if _ext.HAS_EXTENSION else []))
def test_bad_input(backend):
    good = torch.randn(2, 5, 4).log_softmax(-1)
    cases = [
        (dict(log_probs=good[0]), ValueError, "log_probs"),
        (dict(log_probs=good.long()), TypeError, "log_probs"),
        (dict(log_probs=good[:0]), ValueError, "log_probs"),
        (dict(log_probs=torch.where(good > -1, float("nan"), good)), ValueError, "log_probs"),
        (dict(log_probs=torch.where(good > -1, float("inf"), good)), ValueError, "log_probs"),
        (dict(lengths=torch.tensor([6, 1])), ValueError, "lengths"),
        (dict(lengths=torch.tensor([-1, 1])), ValueError, "lengths"),
        (dict(lengths=torch.tensor([1])), ValueError, "lengths"),
        (dict(lengths=torch.tensor([1.5, 2.0])), TypeError, "lengths"),
        (dict(blank=4), ValueError, "blank"),
        (dict(blank=-1), ValueError, "blank"),
        (dict(backend="gpu"), ValueError, "backend"),
    ]
    for kwargs, error, name in cases:
        args = dict(log_probs=good, lengths=None, blank=0, backend=backend) | kwargs
        with pytest.raises(error, match=name):
            crnn_fast.ctc_greedy(**args)
    with pytest.raises(ValueError, match="backend"):
        crnn_fast.ctc_greedy(good, backend="cuda")  # CPU tensor


@needs_extension
def test_compiled_op_checks_its_arguments():
    """The C++ op is reachable without the Python wrapper: it must check too, naming the argument."""
    op = torch.ops.crnn_fast.ctc_greedy
    good = torch.randn(2, 5, 4).log_softmax(-1)
    lengths = torch.tensor([5, 2])
    for args, name in [
        ((good[0], lengths, 0), "log_probs"),
        ((good, lengths.int(), 0), "lengths"),
        ((good, torch.tensor([6, 2]), 0), "lengths"),
        ((good, torch.tensor([5, -2]), 0), "lengths"),
        ((good, lengths, 7), "blank"),
        ((good.clone().fill_(float("nan")), lengths, 0), "log_probs"),
        ((good[:0], lengths[:0], 0), "log_probs"),
    ]:
        with pytest.raises(RuntimeError, match=rf"^{name}\b"):  # the argument's name, not the C++ variable's
            op(*args)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T, C", [(1, 1, 2), (1, 26, 37), (5, 13, 96), (64, 26, 37), (3, 400, 6001), (2, 7, 1)])
@pytest.mark.parametrize("peaked", [False, True])
def test_torch_ops_greedy_matches_reference(dtype, B, T, C, peaked):
    from crnn_fast.ops.ctc_greedy import ctc_greedy_torch

    log_probs, lengths = _inputs(B, T, C, dtype, peaked=peaked)
    _assert_same(ctc_greedy_torch(log_probs, lengths), ctc_greedy_ref(log_probs, lengths))
    _assert_same(ctc_greedy_torch(log_probs), ctc_greedy_ref(log_probs))


def test_torch_ops_greedy_ties_repeats_and_blank():
    from crnn_fast.ops.ctc_greedy import ctc_greedy_torch

    # frames: a a - a b b (ties between 1 and 2 in frame 4 go to 1) with blank 0; and a blank other than 0
    best = [[1, 1, 0, 1, 2, 2], [3, 0, 0, 3, 3, 1]]
    lp = torch.full((2, 6, 4), -5.0)
    for b, row in enumerate(best):
        for t, k in enumerate(row):
            lp[b, t, k] = -0.1 * (t + 1)
    lp[0, 4, 1] = lp[0, 4, 2]
    for blank in (0, 3):
        _assert_same(ctc_greedy_torch(lp, blank=blank), ctc_greedy_ref(lp, blank=blank))
    with pytest.raises(ValueError, match="lengths"):
        ctc_greedy_torch(lp, torch.tensor([7, 1]))


@pytest.mark.cuda
def test_torch_ops_greedy_on_the_gpu():
    from crnn_fast.ops.ctc_greedy import ctc_greedy_torch

    log_probs, lengths = _inputs(64, 200, 96, torch.float16, device="cuda", peaked=True)
    _assert_same(ctc_greedy_torch(log_probs, lengths), ctc_greedy_ref(log_probs, lengths))
