"""crnn_fast: fast CRNN text recognition (CNN → bidirectional LSTM → CTC) on fused kernels for PyTorch."""

from __future__ import annotations

import importlib

import torch

from . import _ext
from .nn import LSTM, convert_lstm
from .ops import ctc_beam_search, ctc_greedy

__version__ = "0.1.0"

# Heavier parts load on first use, so `import crnn_fast` stays quick.
_LAZY = {
    "CRNN": ("crnn_fast.models", "CRNN"),
    "Charset": ("crnn_fast.data", "Charset"),
    "Recognizer": ("crnn_fast.recognize", "Recognizer"),
    "CTCDecoder": ("crnn_fast.decoding", "CTCDecoder"),
    "CTCHypothesis": ("crnn_fast.decoding", "CTCHypothesis"),
    "CharNgramLM": ("crnn_fast.decoding", "CharNgramLM"),
    "export_onnx": ("crnn_fast.models.onnx", "export_onnx"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'crnn_fast' has no attribute {name!r}")


def backends() -> dict:
    """What this install holds and what can run on this machine.

    compiled: per op, the devices crnn_fast._C has kernels for (what was built);
    usable: per op, the backend names that can run here now: "ref" always, a compiled kernel only where its
        device is present, Triton only where triton imports and a GPU (or TRITON_INTERPRET=1) can run it.
    Example on a CPU machine with a CUDA build: {"extension": True, "extension_error": None,
        "cuda_available": False, "triton": False, "compiled": {"ctc_greedy": ["cpu", "cuda"], ...},
        "usable": {"ctc_greedy": ["ref", "cpu"], "lstm": ["ref", "torch"], ...}}
    """
    from .ops import lstm as lstm_ops
    from .ops.preprocess import triton_available

    cuda = torch.cuda.is_available()
    compiled_ops = {"ctc_greedy": "ctc_greedy", "ctc_beam_search": "ctc_beam_search", "lstm": "lstm_recurrence"}
    compiled = {op: [d for d in ("cpu", "cuda") if _ext.has_kernel(kernel, d)] for op, kernel in compiled_ops.items()}
    present = {"cpu": True, "cuda": cuda}
    usable = {op: ["ref"] + [d for d in devices if present[d]] for op, devices in compiled.items()}
    triton_runs = lstm_ops.HAS_TRITON and (cuda or lstm_ops.TRITON_INTERPRET)
    usable["lstm"][1:1] = ["torch"] + (["triton"] if triton_runs and lstm_ops.triton_lstm_module() else [])
    device = torch.device("cuda" if cuda else "cpu")
    usable["resize_normalize_pad"] = ["ref"] + (["triton"] if triton_runs and triton_available(device) else [])
    return {
        "extension": _ext.HAS_EXTENSION,
        "extension_error": _ext.EXTENSION_ERROR,
        "cuda_available": cuda,
        "triton": lstm_ops.HAS_TRITON,
        "compiled": compiled,
        "usable": usable,
    }


__all__ = ["LSTM", "convert_lstm", "ctc_greedy", "ctc_beam_search", "backends", "CRNN", "Charset", "CTCDecoder",
           "CTCHypothesis", "CharNgramLM", "Recognizer", "export_onnx", "__version__"]
