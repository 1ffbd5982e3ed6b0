"""crnn_fast._ext.resolve: the one place that decides what backend="auto" means (the GPU validation gate)."""

import pytest
import torch

import crnn_fast._ext as ext
from crnn_fast._ext import BackendUnavailableError, resolve

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
BACKENDS = ("auto", "fast", "faster", "ref")


def _check(unavailable=()):
    return lambda name: BackendUnavailableError(f"{name} is not built") if name in unavailable else None


def test_auto_ignores_kernels_the_gate_does_not_list(monkeypatch):
    monkeypatch.setattr(ext, "GPU_VALIDATED", {})
    assert resolve("op", "auto", CUDA, backends=BACKENDS, check=_check(), fallback="ref") == "ref"
    monkeypatch.setattr(ext, "GPU_VALIDATED", {"other_op": ("fast",)})
    assert resolve("op", "auto", CUDA, backends=BACKENDS, check=_check(), fallback="ref") == "ref"


def test_auto_takes_the_first_validated_kernel_that_can_run(monkeypatch):
    monkeypatch.setattr(ext, "GPU_VALIDATED", {"op": ("faster", "fast")})
    assert resolve("op", "auto", CUDA, backends=BACKENDS, check=_check(), fallback="ref") == "faster"
    assert resolve("op", "auto", CUDA, backends=BACKENDS, check=_check({"faster"}), fallback="ref") == "fast"
    assert resolve("op", "auto", CUDA, backends=BACKENDS, check=_check({"faster", "fast"}), fallback="ref") == "ref"
    # A validated implementation the caller does not offer is skipped (crnn_fast.ops.lstm.lstm has no "cuda").
    assert resolve("op", "auto", CUDA, backends=("auto", "fast", "ref"), check=_check(), fallback="ref") == "fast"


def test_auto_on_the_cpu_is_the_fallback(monkeypatch):
    monkeypatch.setattr(ext, "GPU_VALIDATED", {"op": ("fast",)})
    assert resolve("op", "auto", CPU, backends=BACKENDS, check=_check(), fallback="ref") == "ref"
    assert resolve("op", "auto", CPU, backends=BACKENDS, check=_check(), fallback=lambda: "faster") == "faster"


def test_named_backends_are_checked():
    assert resolve("op", "fast", CPU, backends=BACKENDS, check=_check(), fallback="ref") == "fast"
    with pytest.raises(BackendUnavailableError, match="fast is not built"):
        resolve("op", "fast", CPU, backends=BACKENDS, check=_check({"fast"}), fallback="ref")
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'fast', 'faster', 'ref', got 'slow'"):
        resolve("op", "slow", CPU, backends=BACKENDS, check=_check(), fallback="ref")
    assert issubclass(BackendUnavailableError, RuntimeError)


def test_every_op_follows_the_gate_on_cuda_tensors(monkeypatch):
    """With an empty gate, auto never picks a GPU kernel, whatever is installed: the LSTM runs torch.nn.LSTM
    (crnn_fast.nn.LSTM) or the reference (crnn_fast.ops.lstm.lstm), decoding the CPU kernel (or the reference),
    preprocessing the reference. resolve() reads only the device, so a CPU machine can check the CUDA choice."""
    from crnn_fast.ops.ctc_beam_search import resolve_backend
    from crnn_fast.ops.ctc_greedy import resolve_greedy_backend

    monkeypatch.setattr(ext, "GPU_VALIDATED", {})
    on_host = "cpu" if ext.has_kernel("ctc_greedy", "cpu") else "ref"
    assert resolve_greedy_backend("auto", CUDA) == on_host
    assert resolve_backend("auto", CUDA) == ("cpu" if ext.has_kernel("ctc_beam_search", "cpu") else "ref")
    monkeypatch.setattr(ext, "GPU_VALIDATED", {"ctc_greedy": ("cuda",)})
    assert resolve_greedy_backend("auto", CUDA) == ("cuda" if ext.has_kernel("ctc_greedy", "cuda") else on_host)


def test_the_functional_lstm_takes_no_cuda_or_torch_backend():
    from crnn_fast.ops.lstm import lstm

    x = torch.randn(3, 2, 4)
    weights = list(torch.nn.LSTM(4, 5)._flat_weights)
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'triton', 'ref', got 'cuda'"):
        lstm(x, weights, backend="cuda")
    with pytest.raises(ValueError, match="crnn_fast.nn.LSTM"):
        lstm(x, weights, backend="torch")
    out, (h, c) = lstm(x, weights)  # auto on the CPU: the reference
    ref, (h_ref, c_ref) = lstm(x, weights, backend="ref")
    for got, want in ((out, ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_recognizers_greedy_decoder_follows_the_gate(monkeypatch):
    """On CUDA the recognizer decodes with torch ops on the GPU until the CUDA kernel is validated (and built)."""
    from crnn_fast.ops.ctc_greedy import ctc_greedy, ctc_greedy_torch, greedy_on_device

    monkeypatch.setattr(ext, "GPU_VALIDATED", {})
    assert greedy_on_device(CPU) is ctc_greedy
    assert greedy_on_device(CUDA) is ctc_greedy_torch
    monkeypatch.setattr(ext, "GPU_VALIDATED", {"ctc_greedy": ("cuda",)})
    assert greedy_on_device(CUDA) is (ctc_greedy if ext.has_kernel("ctc_greedy", "cuda") else ctc_greedy_torch)
    monkeypatch.setattr(ext, "has_kernel", lambda op, device_type: True)
    assert greedy_on_device(CUDA) is ctc_greedy
