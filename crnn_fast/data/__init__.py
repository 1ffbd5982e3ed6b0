"""Data handling for text recognition: character sets, synthetic text images, labelled datasets.

Charset loads eagerly (it is light); the synthetic generator and dataset readers (Pillow, lmdb) load on
first use so that `from crnn_fast.data import Charset` stays cheap.
"""

from __future__ import annotations

import importlib

from .charset import Charset

_LAZY = {
    "SynthGenerator": "synth", "SynthDataset": "synth", "TextSampler": "synth", "RenderConfig": "synth",
    "render_text": "synth", "render_heldout": "synth",
    "pad_batch": "..formats.image_batch", "Batch": "..formats.image_batch",
    "FolderDataset": "datasets", "LmdbDataset": "datasets", "open_dataset": "datasets",
    "prepare_image": "datasets", "write_folder": "datasets", "write_lmdb": "datasets", "ImageError": "datasets",
}

__all__ = ["Charset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = _LAZY[name]
        return getattr(importlib.import_module(module if module.startswith(".") else f".{module}", __name__), name)
    raise AttributeError(f"module 'crnn_fast.data' has no attribute {name!r}")
