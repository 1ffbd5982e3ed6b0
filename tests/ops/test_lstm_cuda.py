"""crnn_fast::lstm_recurrence, the persistent CUDA LSTM kernel, and its python face (crnn_fast.ops.lstm_cuda).

Without a GPU: the schema, that the CUDA sources were compiled in, the fake (meta) impl, cuda_lstm_supported, the
multi-layer wrapper's weight packing (with the eager statement of the op), and every argument error that fires
before a launch. With a GPU (`-m cuda`): the kernel against lstm_ref over dtype x B x T x H x layers x directions x
lengths, both exchange algorithms, the compiled op's own checks, opcheck and torch.compile.
"""

import os
import shutil

import pytest
import torch

from crnn_fast import _ext
from crnn_fast.ops import lstm_cuda
from crnn_fast.ops.lstm_cuda import (
    cuda_lstm_supported,
    lstm_cuda_forward,
    lstm_layer_cuda,
    lstm_recurrence_eager,
)
from crnn_fast.reference import lstm_ref

needs_op = pytest.mark.skipif(not lstm_cuda._op_registered(),
                              reason=f"crnn_fast._C without lstm_recurrence: {_ext.EXTENSION_ERROR}")
LOW_DTYPES = [torch.float16, torch.bfloat16]
# Error floor for cases where the low-precision reference happens to be nearly exact (short sequences).
ERROR_FLOOR = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _has_gpu_kernel_build() -> bool:
    """Whether this machine builds CUDA kernels into crnn_fast._C (setup.py: CUDA torch and nvcc)."""
    if torch.version.cuda is None or os.environ.get("CRNN_FAST_BUILD_CUDA", "auto").strip() == "0":
        return False
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    return any(h and os.path.exists(os.path.join(h, "bin", "nvcc")) for h in homes) or shutil.which("nvcc") is not None


def _lstm(I, H, layers, bidirectional, batch_first=False, bias=True, dtype=torch.float64, device="cpu"):
    return torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                         bias=bias).to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# without a GPU


@needs_op
def test_schema():
    schema = str(torch.ops.crnn_fast.lstm_recurrence.default._schema)
    assert schema == ("crnn_fast::lstm_recurrence(Tensor x_proj, Tensor w_hh, Tensor h0, Tensor c0, "
                      "Tensor? lengths=None, int algo=0) -> (Tensor out, Tensor h_n, Tensor c_n)")


@pytest.mark.skipif(not _has_gpu_kernel_build(), reason="no CUDA build of torch or no nvcc: CUDA sources not built")
def test_cuda_kernel_compiled_in():
    """setup.py compiles csrc/cuda/*.cu when torch has CUDA and nvcc exists: the kernel must then be registered."""
    assert _ext.HAS_EXTENSION, _ext.EXTENSION_ERROR
    assert torch._C._dispatch_has_kernel_for_dispatch_key("crnn_fast::lstm_recurrence", "CUDA")
    # Inference on the GPU only: no CPU kernel that could run silently.
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("crnn_fast::lstm_recurrence", "CPU")


@needs_op
def test_cpu_tensors_are_not_run():
    z = torch.zeros
    with pytest.raises(NotImplementedError, match="CPU"):
        torch.ops.crnn_fast.lstm_recurrence(z(2, 3, 32).half(), z(1, 32, 8).half(), z(1, 2, 8).half(),
                                            z(1, 2, 8).half())


@needs_op
@pytest.mark.parametrize("dtype", LOW_DTYPES)
@pytest.mark.parametrize("B, T, H, D", [(1, 1, 256, 2), (5, 13, 20, 1), (64, 26, 256, 2), (3, 0, 7, 2)])
def test_fake_impl_on_meta(dtype, B, T, H, D):
    meta = lambda *shape: torch.empty(*shape, device="meta", dtype=dtype)  # noqa: E731
    lengths = torch.empty(B, device="meta", dtype=torch.int64)
    out, h_n, c_n = torch.ops.crnn_fast.lstm_recurrence(meta(B, T, D * 4 * H), meta(D, 4 * H, H), meta(D, B, H),
                                                        meta(D, B, H), lengths, 0)
    assert out.shape == (B, T, D * H) and h_n.shape == (D, B, H) and c_n.shape == (D, B, H)
    assert all(t.dtype == dtype and t.device.type == "meta" for t in (out, h_n, c_n))


@needs_op
def test_fake_impl_under_fake_tensor_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    B, T, H, D = 3, 7, 40, 2
    with FakeTensorMode():
        x = torch.empty(B, T, D * 4 * H, dtype=torch.bfloat16, device="cuda")
        w = torch.empty(D, 4 * H, H, dtype=torch.bfloat16, device="cuda")
        h = torch.empty(D, B, H, dtype=torch.bfloat16, device="cuda")
        out, h_n, c_n = torch.ops.crnn_fast.lstm_recurrence(x, w, h, h, None, 0)
        assert out.shape == (B, T, D * H) and out.dtype == torch.bfloat16 and out.device.type == "cuda"
        assert h_n.shape == c_n.shape == (D, B, H)


def test_cuda_lstm_supported_rejects():
    for args in [(torch.float32, 256, "cuda"), (torch.float64, 256, "cuda"), (torch.float16, 0, "cuda"),
                 (torch.float16, 257, "cuda"), (torch.float16, True, "cuda"), (torch.float16, 256.0, "cuda"),
                 (torch.float16, 256, "cpu"), (torch.bfloat16, 64, torch.device("cpu"))]:
        assert cuda_lstm_supported(*args) is False, args


@pytest.mark.parametrize("capability, expected", [((9, 0), True), ((8, 0), True), ((8, 6), True), ((7, 5), False)])
def test_cuda_lstm_supported_accepts(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    built = lstm_cuda._op_registered() and _ext.has_kernel("lstm_recurrence", "cuda")
    for dtype, H in [(torch.float16, 256), (torch.bfloat16, 1), (torch.float16, 20), (torch.bfloat16, 200)]:
        assert cuda_lstm_supported(dtype, H, "cuda:0") is (expected and built)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("time_major", [False, True])
def test_layer_packing_matches_lstm_ref(layers, bidirectional, bias, with_lengths, time_major):
    """The wrapper's per-layer GEMM (stacked W_ih, summed biases; a time-major input projected in its own layout)
    + the op's semantics give torch.nn.LSTM."""
    B, T, I, H = 4, 9, 5, 6
    lstm = _lstm(I, H, layers, bidirectional, bias=bias)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64).transpose(0, 1) if time_major else torch.randn(B, T, I).double()
    h0 = torch.randn(layers * D, B, H, dtype=torch.float64)
    c0 = torch.randn(layers * D, B, H, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 0, 5]) if with_lengths else None
    with torch.no_grad():
        out, h_n, c_n = lstm_cuda._forward_layers(list(lstm._flat_weights), x, h0, c0, lengths, num_layers=layers,
                                                  num_directions=D, recurrence=lstm_recurrence_eager)
        expected, (h_e, c_e) = lstm_ref(x, lstm._flat_weights, (h0, c0), num_layers=layers,
                                        bidirectional=bidirectional, batch_first=True, lengths=lengths)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_n, h_e, atol=1e-10, rtol=0)
    torch.testing.assert_close(c_n, c_e, atol=1e-10, rtol=0)


def test_eager_statement_of_the_op_matches_lstm_ref():
    """lstm_recurrence_eager (what the kernel computes) on a time-major, strided x_proj."""
    T, B, I, H = 7, 3, 4, 5
    lstm = _lstm(I, H, 1, True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    w_ih = torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse])
    bias = torch.cat([lstm.bias_ih_l0 + lstm.bias_hh_l0, lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse])
    x_proj = torch.nn.functional.linear(x, w_ih, bias).transpose(0, 1)  # (B, T, 8H), time-major memory
    w_hh = torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse])
    zeros = torch.zeros(2, B, H, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 0])
    with torch.no_grad():
        out, h_n, c_n = lstm_recurrence_eager(x_proj, w_hh, zeros, zeros, lengths)
        expected, (h_e, c_e) = lstm_ref(x, lstm._flat_weights, bidirectional=True, lengths=lengths)
    torch.testing.assert_close(out, expected.transpose(0, 1), atol=1e-10, rtol=0)
    torch.testing.assert_close(h_n, h_e, atol=1e-10, rtol=0)
    torch.testing.assert_close(c_n, c_e, atol=1e-10, rtol=0)


def _forward_cases():
    """(kwargs overrides, error type, message fragment) for lstm_cuda_forward; all fire before any launch."""
    return [
        (dict(input=torch.randn(5, 2, 8)), TypeError, "input"),  # float32
        (dict(input=torch.randn(5, 8).half()), ValueError, "input"),  # 2-D
        (dict(input=torch.randn(5, 0, 8).half()), ValueError, "empty batch"),
        (dict(lengths=torch.tensor([6, 1])), ValueError, "lengths"),
        (dict(lengths=torch.tensor([-1, 1])), ValueError, "lengths"),
        (dict(lengths=torch.tensor([1.0, 2.0])), TypeError, "lengths"),
        (dict(lengths=torch.tensor([1, 2, 3])), ValueError, "lengths"),
        (dict(hx=(torch.zeros(2, 2, 6).half(), torch.zeros(2, 2, 6).half())), ValueError, "hx"),
        (dict(hx=(torch.zeros(4, 2, 6), torch.zeros(4, 2, 6))), TypeError, "hx"),  # float32 state
        (dict(algo="fast"), ValueError, "algo"),
        (dict(), ValueError, "CUDA tensor"),  # everything valid but on the CPU
    ]


@pytest.mark.parametrize("case", range(len(_forward_cases())))
def test_forward_argument_errors(case):
    kwargs, error, match = _forward_cases()[case]
    lstm = _lstm(8, 6, 2, True, dtype=torch.float16)
    args = dict(input=torch.randn(5, 2, 8).half(), hx=None, lengths=None, algo="auto") | kwargs
    with torch.no_grad(), pytest.raises(error, match=match):
        lstm_cuda_forward(lstm, args.pop("input"), **args)


def test_forward_rejects_modules_and_weights():
    x = torch.randn(5, 2, 8).half()
    with torch.no_grad():
        with pytest.raises(NotImplementedError, match="proj_size"):
            lstm_cuda_forward(torch.nn.LSTM(8, 6, proj_size=3).half(), x)
        with pytest.raises(TypeError, match="module_or_weights"):
            lstm_cuda_forward(torch.nn.GRU(8, 6).half(), x)
        lstm = _lstm(8, 6, 2, True, dtype=torch.float16)
        with pytest.raises(ValueError, match="weights must hold"):
            lstm_cuda_forward(list(lstm._flat_weights)[:-1], x, num_layers=2, bidirectional=True)
        with pytest.raises(ValueError, match="num_layers"):
            lstm_cuda_forward(list(lstm._flat_weights), x, num_layers=0, bidirectional=True)
        with pytest.raises(TypeError, match=r"weights\[1\]"):
            lstm_cuda_forward([w.float() if i == 1 else w for i, w in enumerate(lstm._flat_weights)], x,
                              num_layers=2, bidirectional=True)
        big = _lstm(8, 300, 1, False, dtype=torch.float16)
        with pytest.raises(ValueError, match="hidden sizes"):
            lstm_cuda_forward(big, x)


def test_forward_is_inference_only():
    lstm = _lstm(8, 6, 1, True, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="inference-only"):
        lstm_cuda_forward(lstm, torch.randn(5, 2, 8).half())  # grad enabled, parameters require grad


def _layer_args(B=3, T=4, H=8, D=2, dtype=torch.float16):
    return dict(x_proj=torch.randn(B, T, D * 4 * H).to(dtype), w_hh=torch.randn(D, 4 * H, H).to(dtype),
                h0=torch.zeros(D, B, H).to(dtype), c0=torch.zeros(D, B, H).to(dtype), lengths=None, algo="auto")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x_proj=torch.randn(3, 4, 64)), TypeError, "x_proj"),
    (dict(x_proj=torch.randn(3, 4, 63).half()), ValueError, "x_proj"),
    (dict(x_proj=torch.randn(0, 4, 64).half()), ValueError, "empty batch"),
    (dict(w_hh=torch.randn(2, 32, 8).bfloat16()), TypeError, "w_hh"),
    (dict(w_hh=torch.randn(3, 32, 8).half()), ValueError, "w_hh"),
    (dict(w_hh=torch.randn(2, 30, 8).half()), ValueError, "w_hh"),
    (dict(h0=torch.zeros(2, 4, 8).half()), ValueError, "h0"),
    (dict(c0=torch.zeros(2, 3, 8)), TypeError, "c0"),
    (dict(lengths=torch.tensor([5, 1, 1])), ValueError, "lengths"),
    (dict(algo="cudnn"), ValueError, "algo"),
    (dict(), ValueError, "CUDA tensor"),
])
def test_layer_argument_errors(kwargs, error, match):
    args = _layer_args() | kwargs
    with torch.no_grad(), pytest.raises(error, match=match):
        lstm_layer_cuda(**args)


def test_layer_is_inference_only():
    args = _layer_args()
    args["w_hh"].requires_grad_(True)
    with pytest.raises(RuntimeError, match="inference-only"):
        lstm_layer_cuda(**args)


# ---------------------------------------------------------------------------------------------------------------
# on the GPU


def _max_err(got, ref64):
    return (got.double() - ref64).abs().max().item() if got.numel() else 0.0


def _assert_within_low_precision(got, ref64, ref_low, dtype, what):
    """DESIGN: error against the high-precision reference at most 2x that of the reference in low precision."""
    err, err_low = _max_err(got, ref64), _max_err(ref_low, ref64)
    bound = max(2 * err_low, ERROR_FLOOR[dtype])
    assert err <= bound, f"{what}: max error {err:.3g} > bound {bound:.3g} (low-precision reference {err_low:.3g})"


def _compare_to_reference(dtype, B, T, I, H, layers, bidirectional, lengths, batch_first=True, with_hx=False,
                          algo="auto"):
    lstm = _lstm(I, H, layers, bidirectional, batch_first=batch_first, dtype=dtype, device="cuda")
    D = 2 if bidirectional else 1
    x = torch.randn((B, T, I) if batch_first else (T, B, I), device="cuda").to(dtype)
    hx = None
    if with_hx:
        hx = tuple((0.5 * torch.randn(layers * D, B, H, device="cuda")).to(dtype) for _ in range(2))
    with torch.inference_mode():
        out, (h_n, c_n) = lstm_cuda_forward(lstm, x, hx, lengths, algo=algo)
        weights64 = [w.double() for w in lstm._flat_weights]
        hx64 = None if hx is None else tuple(s.double() for s in hx)
        kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, lengths=lengths)
        ref64, (h64, c64) = lstm_ref(x.double(), weights64, hx64, **kw)
        ref_low, (h_low, c_low) = lstm_ref(x, list(lstm._flat_weights), hx, **kw)
    assert out.shape == ref64.shape and out.dtype == dtype and out.is_contiguous()
    assert h_n.shape == c_n.shape == (layers * D, B, H)
    _assert_within_low_precision(out, ref64, ref_low, dtype, "output")
    _assert_within_low_precision(h_n, h64, h_low, dtype, "h_n")
    _assert_within_low_precision(c_n, c64, c_low, dtype, "c_n")
    if lengths is not None:  # exact zeros past each sequence's end
        steps = torch.arange(T)[None, :] >= torch.as_tensor(lengths).cpu()[:, None]  # (B, T)
        padded = out.cpu() if batch_first else out.cpu().transpose(0, 1)
        assert torch.all(padded[steps] == 0)


def _lengths(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T
    return lengths


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", LOW_DTYPES)
@pytest.mark.parametrize("B", [1, 7, 300])
@pytest.mark.parametrize("T", [1, 13, 130])
@pytest.mark.parametrize("H", [20, 40, 200, 256])  # 20: not a multiple of 8; 40: of 8 but not 16; 200: 7 CTAs
def test_matches_reference_grid(dtype, B, T, H):
    _compare_to_reference(dtype, B, T, 64, H, layers=2, bidirectional=True, lengths=_lengths(B, T, B * T + H))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", LOW_DTYPES)
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_matches_reference_options(dtype, layers, bidirectional, batch_first, with_lengths, with_hx):
    B, T = 5, 9
    lengths = torch.tensor([9, 1, 0, 5, 9]) if with_lengths else None
    _compare_to_reference(dtype, B, T, 24, 40, layers, bidirectional, lengths, batch_first, with_hx)


def _cuda_algos():
    algos = ["auto", "cooperative"]
    if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9:
        algos.append("cluster")
    return algos


@pytest.mark.cuda
@pytest.mark.parametrize("algo", ["auto", "cluster", "cooperative"])
@pytest.mark.parametrize("dtype", LOW_DTYPES)
def test_target_shape_both_algorithms(algo, dtype):
    """The CRNN shape of the issue: input 512, H 256, 2 layers, bidirectional, T 26; both exchange paths."""
    if algo not in _cuda_algos():
        pytest.skip("clusters need sm_90")
    _compare_to_reference(dtype, 64, 26, 512, 256, 2, True, _lengths(64, 26, 1), algo=algo)


def _layer_inputs(B, T, H, D, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *shape, scale=1.0: (scale * torch.randn(*shape, device="cuda", generator=g)).to(dtype)  # noqa: E731
    return r(B, T, D * 4 * H), r(D, 4 * H, H, scale=H**-0.5), r(D, B, H, scale=0.5), r(D, B, H, scale=0.5)


def _assert_layer_matches_eager(got, x_proj, w_hh, h0, c0, lengths, dtype):
    """Op vs its eager statement on the same (low-precision) inputs, computed in fp32: the kernel's own error."""
    with torch.no_grad():
        expected = lstm_recurrence_eager(x_proj.float(), w_hh.float(), h0.float(), c0.float(),
                                         None if lengths is None else lengths.cuda())
    tol = {torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    for name, g, e in zip(("out", "h_n", "c_n"), got, expected):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), e, atol=tol, rtol=tol, msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize("algo", ["auto", "cluster", "cooperative"])
@pytest.mark.parametrize("dtype", LOW_DTYPES)
@pytest.mark.parametrize("B, T, H, D", [(1, 1, 256, 2), (3, 5, 20, 2), (9, 17, 40, 1), (70, 6, 256, 2),
                                        (1030, 7, 256, 2), (2, 11, 1, 2), (4, 3, 129, 1)])
def test_layer_op_matches_eager(algo, dtype, B, T, H, D):
    """Single layer: tiles of 8..64 rows, the persistent tile loop (B = 1030), H = 1 and 129 (5 CTAs, KT 16)."""
    if algo not in _cuda_algos():
        pytest.skip("clusters need sm_90")
    x_proj, w_hh, h0, c0 = _layer_inputs(B, T, H, D, dtype)
    lengths = _lengths(B, T, B + T)
    with torch.no_grad():
        got = lstm_layer_cuda(x_proj, w_hh, h0, c0, lengths, algo=algo)
    _assert_layer_matches_eager(got, x_proj, w_hh, h0, c0, lengths, dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", LOW_DTYPES)
def test_layer_op_strides_and_lengths_on_device(dtype):
    B, T, H, D = 6, 10, 48, 2
    x_proj, w_hh, h0, c0 = _layer_inputs(B, T, H, D, dtype)
    lengths = torch.tensor([10, 0, 3, 10, 1, 7])
    time_major = x_proj.transpose(0, 1).contiguous().transpose(0, 1)  # (B, T, F) view with stride(0) < stride(1)
    sparse_features = torch.cat([x_proj, x_proj], dim=-1)[..., ::2]  # feature stride 2: made dense by the op
    with torch.no_grad():
        for xp in (time_major, x_proj[:, :, :].clone()):
            got = torch.ops.crnn_fast.lstm_recurrence(xp, w_hh, h0, c0, lengths.cuda(), 0)
            _assert_layer_matches_eager(got, x_proj, w_hh, h0, c0, lengths, dtype)
        got = torch.ops.crnn_fast.lstm_recurrence(sparse_features, w_hh, h0, c0, lengths, 0)  # host lengths
        _assert_layer_matches_eager(got, sparse_features.contiguous(), w_hh, h0, c0, lengths, dtype)
        out, h_n, c_n = torch.ops.crnn_fast.lstm_recurrence(x_proj[:, :0], w_hh, h0, c0, None, 0)  # T = 0
        assert out.shape == (B, 0, D * H) and torch.equal(h_n, h0) and torch.equal(c_n, c0)


@pytest.mark.cuda
def test_compiled_op_checks_its_arguments():
    """The op is reachable without the Python wrapper: it must check too, naming the argument."""
    op = torch.ops.crnn_fast.lstm_recurrence
    x_proj, w_hh, h0, c0 = _layer_inputs(3, 4, 8, 2, torch.float16)
    good = dict(x_proj=x_proj, w_hh=w_hh, h0=h0, c0=c0, lengths=None, algo=0)
    cases = [
        (dict(x_proj=x_proj.float()), "x_proj"),
        (dict(x_proj=x_proj[..., :-1]), "x_proj"),
        (dict(x_proj=x_proj[:0]), "x_proj"),
        (dict(w_hh=w_hh.bfloat16()), "w_hh"),
        (dict(w_hh=torch.zeros(2, 4 * 300, 300, device="cuda").half(), x_proj=torch.zeros(3, 4, 2400, device="cuda")
              .half(), h0=torch.zeros(2, 3, 300, device="cuda").half(), c0=torch.zeros(2, 3, 300, device="cuda")
              .half()), "w_hh"),
        (dict(h0=h0[:, :2]), "h0"),
        (dict(c0=c0.cpu()), "c0"),
        (dict(lengths=torch.tensor([5, 1, 1])), "lengths"),
        (dict(lengths=torch.tensor([-1, 1, 1])), "lengths"),
        (dict(lengths=torch.tensor([1, 1, 1], dtype=torch.int32)), "lengths"),
        (dict(lengths=torch.tensor([1, 1])), "lengths"),
        (dict(algo=3), "algo"),
    ]
    for kwargs, name in cases:
        args = good | kwargs
        with pytest.raises(RuntimeError, match=name):
            op(args["x_proj"], args["w_hh"], args["h0"], args["c0"], args["lengths"], args["algo"])


@pytest.mark.cuda
def test_opcheck():
    for dtype in LOW_DTYPES:
        x_proj, w_hh, h0, c0 = _layer_inputs(3, 5, 40, 2, dtype)
        lengths = torch.tensor([5, 2, 0], device="cuda")
        torch.library.opcheck(torch.ops.crnn_fast.lstm_recurrence.default, (x_proj, w_hh, h0, c0, lengths, 0))


@pytest.mark.cuda
def test_torch_compile_fullgraph():
    op = torch.ops.crnn_fast.lstm_recurrence
    x_proj, w_hh, h0, c0 = _layer_inputs(4, 6, 64, 2, torch.float16)

    @torch.compile(fullgraph=True)
    def layer(x_proj, w_hh, h0, c0):
        out, h_n, c_n = op(x_proj * 1.0, w_hh, h0, c0, None, 0)
        return out.float().sum(-1), h_n, c_n

    with torch.no_grad():
        got = layer(x_proj, w_hh, h0, c0)
        out, h_n, c_n = op(x_proj, w_hh, h0, c0, None, 0)
    torch.testing.assert_close(got[0], out.float().sum(-1))
    torch.testing.assert_close(got[1], h_n)
    torch.testing.assert_close(got[2], c_n)


@pytest.mark.cuda
def test_matches_cudnn_module_and_weight_list():
    """Drop-in: an nn.LSTM's own (cuDNN) forward, the module path and the weight-list path agree."""
    lstm = _lstm(512, 256, 2, True, dtype=torch.float16, device="cuda").eval()
    x = torch.randn(26, 16, 512, device="cuda").half()
    with torch.inference_mode():
        expected, (h_e, c_e) = lstm(x)
        got, (h, c) = lstm_cuda_forward(lstm, x)
        got2, _ = lstm_cuda_forward(list(lstm._flat_weights), x, num_layers=2, bidirectional=True)
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(h, h_e, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(c, c_e, atol=2e-2, rtol=2e-2)
    assert torch.equal(got, got2)
