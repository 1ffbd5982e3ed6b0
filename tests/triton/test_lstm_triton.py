"""The Triton LSTM kernels against lstm_ref / torch.nn.LSTM.

On the CPU the kernels run in the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1): tiny shapes,
every launch mode the interpreter can run (one program per direction; several per direction one launch per
step; the grid-sync code with one program per group; batch chunking). Tests marked `cuda` run the same
checks on the GPU at real sizes, plus what only a GPU can do: the multi-program grid barrier, CUDA graphs,
inductor.
"""

import pytest
import torch

pytest.importorskip("triton")

from crnn_fast.nn import LSTM  # noqa: E402
from crnn_fast.ops.lstm import lstm, lstm_triton_layer, triton_lstm_module  # noqa: E402
from crnn_fast.reference import lstm_ref  # noqa: E402
from crnn_fast.triton import lstm as triton_lstm  # noqa: E402
from crnn_fast.triton.lstm import lstm_config  # noqa: E402

# The ops are registered on first use; the op-level tests below call torch.ops.crnn_fast.* directly.
assert triton_lstm_module() is not None

CUDA = torch.device("cuda")
# The error floor of one rounding in each low precision, on values of order 1.
FLOOR = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _device():
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _make(B, T, I, H, layers, bidirectional, batch_first, lengths, *, bias=True, with_hx=True, device="cpu",
          seed=0):
    """A torch.nn.LSTM in float64 with its weights, input, state and lengths."""
    gen = torch.Generator().manual_seed(seed)
    module = torch.nn.LSTM(I, H, layers, bias=bias, bidirectional=bidirectional, batch_first=batch_first)
    module = module.double().to(device)
    D = 2 if bidirectional else 1
    x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=gen, dtype=torch.float64).to(device)
    hx = None
    if with_hx:
        hx = tuple(0.5 * torch.randn(layers * D, B, H, generator=gen, dtype=torch.float64).to(device)
                   for _ in range(2))
    if lengths == "var":  # every sequence length from T down, including an empty one when B > T
        lengths = torch.tensor([max(0, T - (3 * b) % (T + 1)) for b in range(B)])
        lengths[0] = T
    return module, x, hx, lengths


def _run(fn, x, weights, hx, grads_of_outputs):
    """Forward, then backward with fixed upstream gradients; returns outputs and input/weight/state grads."""
    leaves = [x, *weights] + ([] if hx is None else list(hx))
    leaves = [t.detach().requires_grad_() for t in leaves]
    x_, weights_ = leaves[0], leaves[1 : 1 + len(weights)]
    hx_ = None if hx is None else tuple(leaves[1 + len(weights) :])
    out, (h, c) = fn(x_, weights_, hx_)
    loss = sum((o.double() * g).sum() for o, g in zip((out, h, c), grads_of_outputs) if g is not None)
    grads = torch.autograd.grad(loss, leaves)
    return [out, h, c, *grads]


def _compare(B, T, I, H, layers, bidirectional, batch_first, lengths, dtype, *, device, bias=True, with_hx=True,
             output_grads=("out", "h", "c"), ratio=2.0, fp32_atol=5e-5):
    module, x, hx, lengths = _make(B, T, I, H, layers, bidirectional, batch_first, lengths, bias=bias,
                                   with_hx=with_hx, device=device)
    weights = [w.detach() for w in module._flat_weights]
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, lengths=lengths)
    D = 2 if bidirectional else 1
    gen = torch.Generator().manual_seed(1)
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    upstream = [torch.randn(s, generator=gen, dtype=torch.float64).to(device) if name in output_grads else None
                for name, s in (("out", out_shape), ("h", (layers * D, B, H)), ("c", (layers * D, B, H)))]

    def cast(t):
        return t.to(dtype)

    exact = _run(lambda x_, w_, hx_: lstm_ref(x_, w_, hx_, **kw), x, weights, hx, upstream)
    ours = _run(lambda x_, w_, hx_: lstm(x_, w_, hx_, backend="triton", **kw), cast(x), [cast(w) for w in weights],
                None if hx is None else tuple(map(cast, hx)), upstream)
    names = ["output", "h_n", "c_n", "grad input"] + [f"grad weights[{i}]" for i in range(len(weights))] + \
        ([] if hx is None else ["grad h_0", "grad c_0"])
    assert ours[0].dtype == dtype and ours[0].shape == exact[0].shape
    if dtype in (torch.float32, torch.float64):
        tol = fp32_atol if dtype == torch.float32 else 1e-10
        for name, a, b in zip(names, ours, exact):
            scale = max(1.0, b.abs().max().item())
            torch.testing.assert_close(a.double(), b, atol=tol * scale, rtol=0, msg=name)
        return
    # Low precision: at most `ratio` x the error of the same reference computed in that dtype.
    base = _run(lambda x_, w_, hx_: lstm_ref(x_, w_, hx_, **kw), cast(x), [cast(w) for w in weights],
                None if hx is None else tuple(map(cast, hx)), upstream)
    for name, a, b, e in zip(names, ours, base, exact):
        err = (a.double() - e).abs().max().item()
        err_base = (b.double() - e).abs().max().item()
        scale = max(1.0, e.abs().max().item())
        assert err <= ratio * err_base + FLOOR[dtype] * scale, f"{name}: error {err:.3g} vs reference's {err_base:.3g}"


# -- CPU (interpreter) ----------------------------------------------------------------------------------------

SHAPES = [  # B, T, I, H, layers, bidirectional, batch_first, lengths
    pytest.param(1, 1, 3, 8, 1, False, False, None, id="B1-T1"),
    pytest.param(3, 5, 4, 20, 2, True, True, "var", id="Bodd-Todd-H20-2layers-bidir-lengths"),
    pytest.param(2, 17, 3, 8, 1, True, False, None, id="Tlong-bidir"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("B, T, I, H, layers, bidirectional, batch_first, lengths", SHAPES)
def test_forward_and_grads_match_reference(B, T, I, H, layers, bidirectional, batch_first, lengths, dtype):
    _compare(B, T, I, H, layers, bidirectional, batch_first, lengths, dtype, device="cpu")


@pytest.mark.parametrize("config, H", [
    pytest.param(dict(block_h=16), 40, id="per_step-NSPLIT3"),             # several programs per direction
    pytest.param(dict(mode="per_step"), 12, id="per_step-NSPLIT1"),
    pytest.param(dict(mode="grid_sync"), 12, id="grid_sync-NSPLIT1"),      # the barrier code, one program/group
    pytest.param(dict(mode="grid_sync", sm_count=2, block_b=16), 12, id="grid_sync-chunked"),  # 3 launches
])
def test_launch_modes_exact_in_float64(config, H):
    B = 35 if "sm_count" in config else 3
    with lstm_config(**config):
        _compare(B, 4, 3, H, 2, True, True, "var", torch.float64, device="cpu")


def test_several_batch_tiles():
    with lstm_config(block_b=16):
        _compare(33, 3, 2, 8, 1, True, False, "var", torch.float32, device="cpu")


@pytest.mark.parametrize("bias, with_hx, output_grads", [
    (False, True, ("out",)),          # no biases; only the output is used
    (True, False, ("h",)),            # no hx; only h_n is used (no output gradient reaches the kernel)
    (True, True, ("c",)),
])
def test_options(bias, with_hx, output_grads):
    _compare(2, 4, 3, 8, 2, True, False, "var", torch.float64, device="cpu", bias=bias, with_hx=with_hx,
             output_grads=output_grads)


def test_long_recurrence_fp16_error_ratio():
    _compare(2, 32, 4, 16, 1, True, True, None, torch.float16, device="cpu")


def test_non_contiguous_input():
    module, x, hx, _ = _make(2, 5, 6, 8, 1, True, False, None)
    x_nc = x.transpose(0, 1).contiguous().transpose(0, 1)  # (T, B, I) view of a batch-first buffer
    assert not x_nc.is_contiguous()
    expected, _ = module(x, hx)
    got, _ = lstm(x_nc, module._flat_weights, hx, bidirectional=True, backend="triton")
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_gradcheck_float64():
    # Several programs per direction are checked exactly against lstm_ref in test_launch_modes_exact_in_float64
    # (a numeric gradcheck of them costs 20 s in the interpreter); on the GPU test_cuda_float64 does both.
    T, B, D, H = 2, 2, 2, 3
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()

    args = (rand(T, B, D * 4 * H), rand(D, 4 * H, H, scale=0.5), rand(D, 4 * H), rand(D, B, H), rand(D, B, H))
    lengths = torch.tensor([2, 1])

    def fn(*a):
        out, (h, c) = lstm_triton_layer(*a, lengths, False)
        return out, h, c

    assert torch.autograd.gradcheck(fn, args, fast_mode=True)


def _op_args(device, dtype=torch.float32, save=True, batch_first=False):
    T, B, H, D = 3, 2, 5, 2
    gen = torch.Generator().manual_seed(0)
    xproj = torch.randn((B, T, D * 4 * H) if batch_first else (T, B, D * 4 * H), generator=gen).to(device, dtype)
    w_hh = (0.5 * torch.randn(D, 4 * H, H, generator=gen)).to(device, dtype)
    bias = torch.randn(D, 4 * H, generator=gen).to(device)
    h0, c0 = (torch.randn(D, B, H, generator=gen).to(device, dtype) for _ in range(2))
    lengths = torch.tensor([3, 1], device=device)
    for t in (xproj, w_hh, bias, h0, c0):
        t.requires_grad_(save)
    return xproj, w_hh, bias, h0, c0, lengths, batch_first, save


def _opcheck(device):
    for save, batch_first in ((True, False), (False, True)):
        torch.library.opcheck(torch.ops.crnn_fast.lstm_triton_fwd.default,
                              _op_args(device, save=save, batch_first=batch_first))
    xproj, w_hh, bias, h0, c0, lengths, batch_first, _ = _op_args(device)
    with torch.no_grad():
        out, h_n, c_n, gates, hs, cs = torch.ops.crnn_fast.lstm_triton_fwd(xproj, w_hh, bias, h0, c0, lengths,
                                                                           batch_first, True)
    bwd_args = (torch.randn_like(out), torch.randn_like(h_n), None, w_hh.detach(), gates, cs, lengths, False)
    torch.library.opcheck(torch.ops.crnn_fast.lstm_triton_bwd.default, bwd_args)


def test_opcheck():
    _opcheck("cpu")


class _Head(torch.nn.Module):
    """docTR's CRNN head shape (2-layer bidirectional batch-first LSTM, then a Linear), small."""

    def __init__(self, n_in, hidden, n_out, backend):
        super().__init__()
        self.rnn = LSTM(n_in, hidden, num_layers=2, bidirectional=True, batch_first=True, backend=backend)
        self.linear = torch.nn.Linear(2 * hidden, n_out)

    def forward(self, x):
        return self.linear(self.rnn(x)[0])


def _compile_check(device, backend):
    head = _Head(6, 8, 5, "triton").to(device)
    x = torch.randn(3, 7, 6, device=device, requires_grad=True)
    expected = head(x)
    (gx_expected,) = torch.autograd.grad(expected.sum(), x)
    torch._dynamo.reset()
    compiled = torch.compile(head, fullgraph=True, backend=backend)  # fullgraph: a graph break raises
    got = compiled(x)
    (gx,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gx_expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference graph: the save=False path
        torch.testing.assert_close(compiled(x), expected, atol=1e-5, rtol=1e-5)


def test_torch_compile_fullgraph_no_graph_break():
    # On the CPU the op is an opaque custom op (wrap_triton cannot trace interpreted kernels): aot_eager
    # checks dynamo (no graph break), the fake impls and the autograd registration under AOTAutograd.
    _compile_check("cpu", "aot_eager")


def test_op_argument_errors():
    xproj, w_hh, bias, h0, c0, lengths, batch_first, save = _op_args("cpu", save=False)
    op = torch.ops.crnn_fast.lstm_triton_fwd
    with pytest.raises(ValueError, match="xproj"):
        op(xproj[..., :-1], w_hh, bias, h0, c0, lengths, batch_first, save)
    with pytest.raises(ValueError, match="w_hh"):
        op(xproj, w_hh[:, :, :-1], bias, h0, c0, lengths, batch_first, save)
    with pytest.raises(ValueError, match="w_hh"):
        op(xproj, w_hh.double(), bias, h0, c0, lengths, batch_first, save)
    with pytest.raises(ValueError, match="bias"):
        op(xproj, w_hh, bias.half(), h0, c0, lengths, batch_first, save)
    with pytest.raises(ValueError, match="h0"):
        op(xproj, w_hh, bias, h0[:, :1], c0, lengths, batch_first, save)
    with pytest.raises(ValueError, match="c0"):
        op(xproj, w_hh, bias, h0, c0.double(), lengths, batch_first, save)
    with pytest.raises(ValueError, match="lengths"):
        op(xproj, w_hh, bias, h0, c0, lengths[:1], batch_first, save)
    with pytest.raises(ValueError, match="h0"):  # (T, B, ·) read as batch-first: B and T swap
        op(xproj, w_hh, bias, h0, c0, lengths, True, save)


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        with lstm_config(mode="fast"):
            pass
    with pytest.raises(ValueError, match="block_h"):
        with lstm_config(block_h=24):
            triton_lstm._plan(2, 40, 2, torch.float32, torch.device("cpu"))
    with pytest.raises(ValueError, match="deadlock"):
        with lstm_config(mode="grid_sync", block_h=16):
            triton_lstm._plan(2, 40, 2, torch.float32, torch.device("cpu"))
    with pytest.raises(ValueError, match="hidden_size"):
        triton_lstm._plan(2, 1024, 2, torch.float16, torch.device("cpu"))


def test_plan_for_crnn_on_h100():
    # The plan the GPU gets for CRNN's H = 256 (132 SMs): W_hh slices of 64 KB, both directions in one
    # co-resident grid, the batch chunked so that a launch never exceeds the SMs.
    def plan(B, dtype):
        return triton_lstm._plan(B, 256, 2, dtype, torch.device("cuda"), interpret=False)

    with lstm_config(sm_count=132):
        p = plan(64, torch.float16)
        assert (p.BH, p.NSPLIT, p.mode, p.BB) == (32, 8, "grid_sync", 16)
        assert 2 * p.NSPLIT * p.tiles_per_launch <= 132
        big = plan(1024, torch.float16)
        assert big.BB == 64 and big.tiles_per_launch == 8  # 16 tiles: two launches
        p32 = plan(64, torch.float32)
        assert (p32.BH, p32.NSPLIT, p32.BB, p32.num_warps) == (16, 16, 16, 8)
    with lstm_config(sm_count=24):  # a group needs 2 x 8 programs: one tile per launch
        assert plan(64, torch.bfloat16).tiles_per_launch == 1
    with lstm_config(sm_count=8):  # not even one group is co-resident: one launch per step
        assert plan(64, torch.float16).mode == "per_step"


# -- GPU ----------------------------------------------------------------------------------------------------

GPU_SHAPES = [  # B, T, I, H, layers, bidirectional, batch_first, lengths
    pytest.param(1, 1, 32, 256, 1, True, True, None, id="B1-T1-H256"),
    pytest.param(37, 26, 512, 256, 2, True, True, "var", id="CRNN-Bodd-lengths"),
    pytest.param(300, 128, 64, 256, 1, True, False, None, id="Blarge-Tlong-H256"),
    pytest.param(5, 33, 24, 100, 2, True, False, "var", id="H100-not-multiple-of-16"),
    pytest.param(9, 7, 16, 24, 3, False, True, None, id="small-H-single-program"),
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("B, T, I, H, layers, bidirectional, batch_first, lengths", GPU_SHAPES)
def test_cuda_forward_and_grads(B, T, I, H, layers, bidirectional, batch_first, lengths, dtype):
    _compare(B, T, I, H, layers, bidirectional, batch_first, lengths, dtype, device="cuda", fp32_atol=2e-4)


def _torch_error(module, x, hx, dtype, exact):
    m = torch.nn.LSTM(module.input_size, module.hidden_size, module.num_layers, bidirectional=module.bidirectional,
                      batch_first=module.batch_first).to(CUDA, dtype)
    m.load_state_dict(module.state_dict())
    out, _ = m(x.to(dtype), tuple(s.to(dtype) for s in hx))
    return (out.double() - exact).abs().max().item()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("B, T", [(64, 26), (8, 128)])
def test_cuda_error_at_most_twice_cudnn(B, T, dtype):
    module, x, hx, _ = _make(B, T, 512, 256, 2, True, True, None, device=CUDA)
    exact, _ = module(x, hx)
    ours, _ = lstm(x.to(dtype), [w.to(dtype) for w in module._flat_weights], tuple(s.to(dtype) for s in hx),
                   num_layers=2, bidirectional=True, batch_first=True, backend="triton")
    err = (ours.double() - exact).abs().max().item()
    assert err <= 2 * _torch_error(module, x, hx, dtype, exact) + 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("config", [dict(mode="per_step"), dict(sm_count=20), dict(block_h=64),
                                    dict(block_h=16, block_b=32)], ids=str)
def test_cuda_launch_modes(config):
    with lstm_config(**config):
        _compare(70, 9, 32, 256, 1, True, True, "var", torch.float32, device="cuda", fp32_atol=2e-4)


@pytest.mark.cuda
def test_cuda_float64_exact_and_gradcheck():
    _compare(5, 6, 8, 40, 2, True, False, "var", torch.float64, device="cuda")
    args = tuple(a.double().detach().requires_grad_() if a.is_floating_point() else a
                 for a in _op_args(CUDA)[:5])
    lengths = torch.tensor([3, 1], device=CUDA)
    fn = lambda *a: (lambda r: (r[0], *r[1]))(lstm_triton_layer(*a, lengths, False))  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.cuda
def test_cuda_opcheck():
    _opcheck(CUDA)


@pytest.mark.cuda
def test_cuda_torch_compile_inductor_fullgraph():
    _compile_check(CUDA, "inductor")


@pytest.mark.cuda
def test_cuda_graph_capture():
    lstm_module = LSTM(64, 256, num_layers=2, bidirectional=True, batch_first=True, backend="triton")
    lstm_module = lstm_module.to(CUDA, torch.float16).eval()
    x = torch.randn(16, 26, 64, device=CUDA, dtype=torch.float16)
    with torch.no_grad():
        expected, _ = lstm_module(x)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up (compiles the kernels) outside the capture
            lstm_module(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        static_x = x.clone()
        with torch.cuda.graph(graph):
            static_out, _ = lstm_module(static_x)
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(static_out, expected)
        static_x.copy_(torch.randn_like(x))
        graph.replay()
        new_expected, _ = lstm_module(static_x)
        torch.testing.assert_close(static_out, new_expected)
