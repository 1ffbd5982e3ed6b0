"""crnn_fast: fast CRNN text recognition (CNN → bidirectional LSTM → CTC) on fused kernels for PyTorch."""

from __future__ import annotations

import importlib
import importlib.util

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
    """What can run here: the compiled extension, its CPU/CUDA kernels per op, Triton, and a GPU.

    Example: {"extension": True, "extension_error": None, "cuda_available": False, "triton": True,
              "ops": {"ctc_greedy": ["ref", "cpu"], "lstm": ["ref", "torch"]}}
    """
    from .ops.lstm import HAS_TRITON

    ops = {
        "ctc_greedy": ["ref"] + [d for d in ("cpu", "cuda") if _ext.has_kernel("ctc_greedy", d)],
        "ctc_beam_search": ["ref"] + [d for d in ("cpu", "cuda") if _ext.has_kernel("ctc_beam_search", d)],
        "lstm": ["ref", "torch"] + (["triton"] if HAS_TRITON else [])
        + (["cuda"] if _ext.has_kernel("lstm_recurrence", "cuda") else []),
    }
    return {
        "extension": _ext.HAS_EXTENSION,
        "extension_error": _ext.EXTENSION_ERROR,
        "cuda_available": torch.cuda.is_available(),
        "triton": importlib.util.find_spec("triton") is not None,
        "ops": ops,
    }


__all__ = ["LSTM", "convert_lstm", "ctc_greedy", "ctc_beam_search", "backends", "CRNN", "Charset", "CTCDecoder",
           "CTCHypothesis", "CharNgramLM", "Recognizer", "export_onnx", "__version__"]
