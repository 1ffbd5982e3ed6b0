import importlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import crnn_fast
from crnn_fast.nn import LSTM, convert_lstm


def _pair(**kwargs):
    reference = torch.nn.LSTM(**kwargs).double()
    ours = LSTM(**kwargs, backend="ref").double()
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_state_dict_and_parameter_names_match_torch():
    reference, ours = _pair(input_size=5, hidden_size=7, num_layers=2, bidirectional=True)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert "weight_hh_l1_reverse" in ours.state_dict()
    reference.load_state_dict(ours.state_dict())  # both ways


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_contract_matches_torch(batch_first, bidirectional):
    reference, ours = _pair(input_size=4, hidden_size=6, num_layers=2, bidirectional=bidirectional,
                            batch_first=batch_first)
    x = torch.randn((3, 5, 4) if batch_first else (5, 3, 4), dtype=torch.float64)
    D = 2 if bidirectional else 1
    hx = (torch.randn(2 * D, 3, 6, dtype=torch.float64), torch.randn(2 * D, 3, 6, dtype=torch.float64))
    for args in [(x,), (x, hx)]:
        expected, (h_e, c_e) = reference(*args)
        got, (h, c) = ours(*args)
        _close(got, expected), _close(h, h_e), _close(c, c_e)


def test_unbatched_input():
    reference, ours = _pair(input_size=4, hidden_size=3, bidirectional=True)
    x = torch.randn(6, 4, dtype=torch.float64)
    expected, (h_e, _) = reference(x)
    got, (h, _) = ours(x)
    _close(got, expected), _close(h, h_e)


@pytest.mark.parametrize("backend", ["ref", "torch"])
def test_packed_sequence_and_lengths(backend):
    reference, ours = _pair(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, batch_first=True)
    ours.backend = backend
    x = torch.randn(4, 8, 3, dtype=torch.float64)
    lengths = torch.tensor([3, 8, 1, 6])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected_packed, (h_e, c_e) = reference(packed)
    got_packed, (h, c) = ours(packed)
    assert torch.equal(got_packed.batch_sizes, expected_packed.batch_sizes)
    _close(got_packed.data, expected_packed.data), _close(h, h_e), _close(c, c_e)
    expected, _ = pad_packed_sequence(expected_packed, batch_first=True, total_length=8)
    got, (h, c) = ours(x, lengths=lengths)
    _close(got, expected), _close(h, h_e), _close(c, c_e)


def test_convert_lstm_in_place_keeps_outputs():
    class Head(torch.nn.Module):  # the deep-text-recognition-benchmark / EasyOCR BidirectionalLSTM block
        def __init__(self, n_in, hidden, n_out):
            super().__init__()
            self.rnn = torch.nn.LSTM(n_in, hidden, bidirectional=True, batch_first=True)
            self.linear = torch.nn.Linear(hidden * 2, n_out)

        def forward(self, x):
            self.rnn.flatten_parameters()
            return self.linear(self.rnn(x)[0])

    model = torch.nn.Sequential(Head(8, 6, 6), Head(6, 6, 5)).double().eval()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    expected = model(x)
    assert convert_lstm(model, backend="ref") is model
    assert all(type(m.rnn) is LSTM and m.rnn.backend == "ref" for m in model)
    _close(model(x), expected)


def test_convert_a_bare_lstm_returns_replacement():
    lstm = torch.nn.LSTM(3, 4)
    new = convert_lstm(lstm, backend="ref")
    assert isinstance(new, LSTM) and new is not lstm
    assert crnn_fast.convert_lstm is convert_lstm


def test_dropout_between_layers_in_training():
    torch.manual_seed(1)
    ours = LSTM(3, 4, num_layers=3, dropout=0.5, backend="ref").train()
    x = torch.randn(5, 2, 3)
    a, _ = ours(x)
    b, _ = ours(x)
    assert not torch.equal(a, b)  # random masks between layers
    ours.eval()
    _close(ours(x.double().float())[0], ours(x)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        LSTM(3, 4, backend="fast")
    with pytest.raises(NotImplementedError, match="proj_size"):
        LSTM(3, 4, proj_size=2)
    ours = LSTM(3, 4, backend="ref")
    with pytest.raises(RuntimeError, match="input.size"):
        ours(torch.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match="hx"):
        ours(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="lengths"):
        ours(torch.randn(5, 2, 3), lengths=torch.tensor([6, 1]))
    with pytest.raises(ValueError, match="input"):
        ours(torch.randn(5, 2, 3, 1))
    with pytest.raises(TypeError, match="model"):
        convert_lstm("not a model")


# -- The Triton backend through the module (CPU: Triton interpreter, tiny shapes) -----------------------------

needs_triton = pytest.mark.skipif(not importlib.import_module("crnn_fast.ops.lstm").HAS_TRITON,
                                  reason="needs the triton package")


@needs_triton
def test_is_an_rnnbase_not_an_nn_lstm():
    # torch.compile graph-breaks on every nn.LSTM instance, so crnn_fast.nn.LSTM derives from nn.RNNBase
    # (as nn.LSTM does) and runs nn.LSTM's own forward for backend="torch".
    ours = LSTM(3, 4, backend="triton")
    assert isinstance(ours, torch.nn.RNNBase) and ours.mode == "LSTM"
    assert not isinstance(ours, torch.nn.LSTM)
    assert "backend='triton'" in repr(ours)
    ours.flatten_parameters()  # what EasyOCR / deep-text-recognition-benchmark call before every forward


@needs_triton
@pytest.mark.parametrize("batch_first", [False, True])
def test_triton_backend_packed_sequence_and_lengths(batch_first):
    reference, ours = _pair(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, batch_first=batch_first)
    ours.backend = "triton"
    x = torch.randn((4, 6, 3) if batch_first else (6, 4, 3), dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 5])
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    expected_packed, (h_e, c_e) = reference(packed)
    got_packed, (h, c) = ours(packed)
    assert torch.equal(got_packed.batch_sizes, expected_packed.batch_sizes)
    _close(got_packed.data, expected_packed.data), _close(h, h_e), _close(c, c_e)
    expected, _ = pad_packed_sequence(expected_packed, batch_first=batch_first, total_length=6)
    got, (h, c) = ours(x, lengths=lengths)
    _close(got, expected), _close(h, h_e), _close(c, c_e)


@needs_triton
def test_triton_backend_unbatched_and_parameter_grads():
    reference, ours = _pair(input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    ours.backend = "triton"
    x = torch.randn(5, 4, dtype=torch.float64)
    expected, (h_e, _) = reference(x)
    got, (h, _) = ours(x)
    _close(got, expected), _close(h, h_e)
    xb = torch.randn(5, 2, 4, dtype=torch.float64)
    reference(xb)[0].square().sum().backward()
    ours(xb)[0].square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0, msg=name)


@needs_triton
def test_triton_backend_dropout_in_training():
    ours = LSTM(3, 4, num_layers=2, dropout=0.5, backend="triton").train()
    x = torch.randn(5, 2, 3)
    torch.manual_seed(1)
    a, _ = ours(x)
    b, _ = ours(x)
    assert not torch.equal(a, b)
    ours.eval()
    reference = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.5).eval()
    reference.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x)[0], reference(x)[0], atol=2e-6, rtol=0)


@needs_triton
def test_triton_backend_under_autocast():
    ours = LSTM(8, 16, bidirectional=True, batch_first=True, backend="triton")
    x = torch.randn(2, 5, 8)
    expected, _ = ours(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, (h, c) = ours(x)
    assert got.dtype == h.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=5e-2, rtol=0)


def _easyocr_head(backend=None):
    class BidirectionalLSTM(torch.nn.Module):  # EasyOCR / deep-text-recognition-benchmark
        def __init__(self, n_in, hidden, n_out):
            super().__init__()
            self.rnn = torch.nn.LSTM(n_in, hidden, bidirectional=True, batch_first=True)
            self.linear = torch.nn.Linear(hidden * 2, n_out)

        def forward(self, x):
            self.rnn.flatten_parameters()
            return self.linear(self.rnn(x)[0])

    return torch.nn.Sequential(BidirectionalLSTM(16, 12, 12), BidirectionalLSTM(12, 12, 7))


def _doctr_head():
    class CRNNHead(torch.nn.Module):  # docTR's CRNN: 2-layer bidirectional LSTM, hidden 128 on 512 features
        def __init__(self):
            super().__init__()
            self.decoder = torch.nn.LSTM(input_size=512, hidden_size=128, batch_first=True, bidirectional=True,
                                         num_layers=2)
            self.linear = torch.nn.Linear(2 * 128, 37)

        def forward(self, x):
            return self.linear(self.decoder(x)[0])

    return CRNNHead()


@needs_triton
@pytest.mark.parametrize("make, shape", [(_easyocr_head, (2, 7, 16)), (_doctr_head, (2, 6, 512))],
                         ids=["easyocr-BidirectionalLSTM", "doctr-CRNN-head"])
def test_convert_ocr_heads_to_triton_keeps_outputs(make, shape):
    model = make().eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
        assert convert_lstm(model, backend="triton") is model
        assert all(type(m) is not torch.nn.LSTM for m in model.modules())
        got = model(x)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


@needs_triton
def test_our_crnn_on_triton_keeps_outputs():
    from crnn_fast.models import CRNN

    model = CRNN(11, variant="small", lstm_backend="torch").eval()
    images = torch.randn(2, 1, 32, 20)
    with torch.no_grad():
        expected = model(images)
        convert_lstm(model, backend="triton")
        assert model.lstm_backend == "triton"
        got = model(images)
    torch.testing.assert_close(got, expected, atol=5e-5, rtol=1e-4)


def test_auto_backend_resolution():
    from crnn_fast.ops.lstm import resolve_lstm_backend

    x = torch.randn(3, 2, 4)
    assert resolve_lstm_backend("auto", x, 8) == "torch"  # CPU tensors: torch.nn.LSTM
    assert resolve_lstm_backend("ref", x, 8) == "ref"
    with pytest.raises(ValueError, match="backend"):
        resolve_lstm_backend("fast", x, 8)


@needs_triton
def test_triton_backend_errors(monkeypatch):
    import crnn_fast.ops.lstm as ops_lstm

    ours = LSTM(3, 4, num_layers=2, bidirectional=True, backend="triton")
    x = torch.randn(5, 2, 3)
    with pytest.raises(RuntimeError, match="input.size"):
        ours(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="dimensions"):
        ours(torch.randn(5, 2, 3, 1))
    with pytest.raises(RuntimeError, match=r"hx\[0\]"):
        ours(x, (torch.zeros(4, 3, 4), torch.zeros(4, 2, 4)))
    with pytest.raises(RuntimeError, match=r"hx\[1\]"):
        ours(x, (torch.zeros(4, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match=r"hx\[0\].*dtype"):
        ours(x, (torch.zeros(4, 2, 4, dtype=torch.float64), torch.zeros(4, 2, 4)))
    with pytest.raises(ValueError, match="dtype"):  # torch.nn.LSTM's own message for input vs weights
        ours(x.double())
    with pytest.raises(ValueError, match="lengths"):
        ours(x, lengths=torch.tensor([6, 1]))
    with pytest.raises(ValueError, match="lengths"):
        ours(x, lengths=torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="lengths"):
        ours(x, lengths=torch.tensor([5, 1, 2]))
    with pytest.raises(TypeError, match="lengths"):
        ours(x, lengths=torch.tensor([5.0, 1.0]))
    with pytest.raises(RuntimeError, match="lengths"):  # torch's own check: unsorted with enforce_sorted=True
        pack_padded_sequence(x, torch.tensor([1, 5]), enforce_sorted=True)
    with pytest.raises(ValueError, match="at least one"):
        ours(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="hidden_size"):
        ops_lstm.resolve_lstm_backend("triton", x, 4096)
    monkeypatch.setattr(ops_lstm, "TRITON_INTERPRET", False)
    with pytest.raises(ValueError, match="CUDA"):
        ours(x)
    monkeypatch.setattr(ops_lstm, "HAS_TRITON", False)
    monkeypatch.setattr(ops_lstm, "TRITON_ERROR", "ModuleNotFoundError: No module named 'triton'")
    with pytest.raises(RuntimeError, match="pip install triton"):
        ours(x)


@pytest.mark.cuda
@needs_triton
def test_cuda_triton_backend_matches_cudnn():
    reference = torch.nn.LSTM(64, 256, num_layers=2, bidirectional=True, batch_first=True).cuda()
    ours = convert_lstm(torch.nn.Sequential(reference), backend="triton").cuda()[0]
    from crnn_fast._ext import GPU_VALIDATED
    from crnn_fast.ops.lstm import resolve_lstm_backend

    x = torch.randn(8, 26, 64, device="cuda")  # float32 with autograd: of the fused kernels only Triton runs it
    expected = "triton" if "triton" in GPU_VALIDATED.get("lstm", ()) else "torch"
    assert resolve_lstm_backend("auto", x, 256) == expected
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], reference(x)[0], atol=2e-4, rtol=1e-3)


def test_cuda_backend_needs_a_cuda_tensor_and_no_grad():
    ours = LSTM(3, 4, bidirectional=True, backend="cuda").half()
    with torch.no_grad(), pytest.raises(ValueError, match="CUDA"):
        ours(torch.randn(5, 2, 3).half())
    with pytest.raises((ValueError, RuntimeError), match="(?i)inference|grad"):
        ours(torch.randn(5, 2, 3).half())


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_backend_module_matches_cudnn(dtype):
    reference = torch.nn.LSTM(64, 256, num_layers=2, bidirectional=True, batch_first=True).cuda().to(dtype)
    ours = convert_lstm(torch.nn.Sequential(reference), backend="cuda").cuda()[0]
    x = torch.randn(8, 26, 64, device="cuda", dtype=dtype)
    lengths = torch.tensor([26, 1, 5, 26, 13, 2, 26, 9])
    with torch.no_grad():
        expected, (h_e, c_e) = convert_lstm(torch.nn.Sequential(reference), backend="torch")[0](x, lengths=lengths)
        got, (h, c) = ours(x, lengths=lengths)
    tol = dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(got, expected, **tol)
    torch.testing.assert_close(h, h_e, **tol)
    torch.testing.assert_close(c, c_e, **tol)


CPU_BACKENDS = ["auto", "torch", "ref", "triton"]  # triton: the interpreter on CPU tensors (tests/conftest.py)


def _small_lstm(backend, dtype=torch.float32):
    torch.manual_seed(0)
    return LSTM(input_size=3, hidden_size=4, bidirectional=True, batch_first=True, backend=backend).to(dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("lengths, error, match", [
    (torch.tensor([2, 8, 1]), ValueError, r"lengths must be in \[0, 7\], got min 1, max 8"),
    (torch.tensor([2, 3]), ValueError, r"lengths must have shape \(3,\), got \(2,\)"),
    (torch.tensor([2.0, 3.5, 1.0]), TypeError, "lengths must be integers, got dtype float32"),
    (torch.tensor([2, -1, 1]), ValueError, r"lengths must be in \[0, 7\]"),
])
def test_lengths_are_checked_alike_on_every_backend(backend, lengths, error, match):
    lstm = _small_lstm(backend)
    with pytest.raises(error, match=match):
        lstm(torch.randn(3, 7, 3), lengths=lengths)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_hx_of_another_dtype_is_named_on_every_backend(backend):
    lstm = _small_lstm(backend)
    hx = (torch.zeros(2, 3, 4, dtype=torch.float64), torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"hx\[0\] \(h_0\) has dtype torch.float64 but input has torch.float32"):
        lstm(torch.randn(3, 7, 3), hx)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_length_zero_is_an_empty_sequence_on_every_backend(backend):
    """Length 0: zero output and the initial state, as the reference defines it (torch.nn.LSTM's packing
    refuses it)."""
    lstm = _small_lstm(backend)
    x = torch.randn(3, 5, 3)
    hx = (torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    lengths = torch.tensor([3, 0, 5])
    out, (h, c) = lstm(x, hx, lengths=lengths)
    ref = _small_lstm("ref")
    out_e, (h_e, c_e) = ref(x, hx, lengths=lengths)
    torch.testing.assert_close(out, out_e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c, c_e, atol=1e-5, rtol=1e-5)
    assert (out[1] == 0).all() and torch.equal(h[:, 1], hx[0][:, 1]) and torch.equal(c[:, 1], hx[1][:, 1])


def test_convert_lstm_checks_every_lstm_before_changing_any():
    model = torch.nn.Sequential(torch.nn.LSTM(3, 4), torch.nn.Sequential(torch.nn.LSTM(4, 4, proj_size=2)))
    with pytest.raises(NotImplementedError, match=r"model.1.0 is an nn.LSTM with proj_size=2.*nothing was converted"):
        convert_lstm(model, backend="ref")
    assert type(model[0]) is torch.nn.LSTM and type(model[1][0]) is torch.nn.LSTM


def test_convert_lstm_keeps_parameters_modes_hooks_and_sharing():
    torch.manual_seed(0)
    shared = torch.nn.LSTM(3, 4, batch_first=True)
    frozen = torch.nn.LSTM(4, 4, batch_first=True)
    frozen.weight_ih_l0.requires_grad_(False)
    model = torch.nn.ModuleDict({"a": shared, "b": torch.nn.Sequential(shared), "frozen": frozen}).train()
    frozen.eval()
    calls = []
    handle = frozen.register_forward_hook(lambda module, args, out: calls.append(type(module).__name__))
    frozen.register_forward_pre_hook(lambda module, args: calls.append("pre"))
    grads = []
    frozen.weight_hh_l0.register_hook(lambda g: grads.append(g))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    params_before = dict(model.named_parameters())

    x = torch.randn(2, 5, 3)
    expected = frozen(shared(x)[0])[0]
    calls.clear()
    convert_lstm(model, backend="ref")

    assert type(model["a"]) is LSTM and model["a"] is model["b"][0]  # still one module
    assert dict(model.named_parameters()).keys() == params_before.keys()
    assert all(p is params_before[n] for n, p in model.named_parameters())  # the very same Parameters
    assert model["frozen"].weight_ih_l0.requires_grad is False and model["frozen"].weight_hh_l0.requires_grad
    assert model["a"].training and not model["frozen"].training
    out = model["frozen"](model["a"](x)[0])[0]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    assert calls == ["pre", "LSTM"]
    out.sum().backward()
    assert len(grads) == 1 and model["frozen"].weight_ih_l0.grad is None
    before = model["a"].weight_hh_l0.detach().clone()
    optimizer.step()  # an optimizer built before the conversion still updates the converted model
    assert not torch.equal(model["a"].weight_hh_l0, before)
    handle.remove()
    model["frozen"](torch.randn(2, 5, 4))
    assert calls == ["pre", "LSTM", "pre"]
