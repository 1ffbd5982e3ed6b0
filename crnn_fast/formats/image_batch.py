"""The model's input contract, in one place: text-line images HEIGHT pixels high, grayscale, normalised by
normalize(), right-padded by repeating each image's last column, and batched as a Batch. Training
(crnn_fast.data), the recognizer, the preprocessing references and kernels (crnn_fast.reference.preprocess,
crnn_fast.triton.preprocess) and the weights' sidecar (INPUT_SPEC) all follow it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

HEIGHT = 32
PIXEL_SCALE = 127.5  # uint8 x -> x / PIXEL_SCALE - 1 in [-1, 1]
INPUT_SPEC = {"height": HEIGHT, "channels": 1, "color": "grayscale (PIL 'L')",
              "normalization": f"x / {PIXEL_SCALE} - 1", "resize": f"height to {HEIGHT} keeping the aspect ratio "
              "(bilinear)", "padding": "right, repeating the last column"}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] (or float pixel values, normalised in place) -> float32 [-1, 1]."""
    return images.float().div_(PIXEL_SCALE).sub_(1.0)


@dataclass
class Batch:
    """images (B, 1, HEIGHT, W) float32 in [-1, 1]; widths (B,) real widths before padding; texts B labels."""

    images: torch.Tensor
    widths: torch.Tensor
    texts: list[str] = field(default_factory=list)


def pad_batch(arrays: Sequence[np.ndarray], texts: Sequence[str] = (), min_width: int = 8) -> Batch:
    """Right-pad grayscale (HEIGHT, W_i) uint8 images to the widest by repeating each image's last column
    (the background continues, no hard edge), then normalise to [-1, 1]."""
    if len(arrays) == 0:
        raise ValueError("arrays must not be empty")
    width = max(min_width, max(a.shape[1] for a in arrays))
    out = np.empty((len(arrays), 1, HEIGHT, width), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] != HEIGHT:
            raise ValueError(f"arrays[{i}] must be ({HEIGHT}, W) uint8, got shape {a.shape}")
        out[i, 0, :, : a.shape[1]] = a
        if a.shape[1] < width:
            out[i, 0, :, a.shape[1]:] = a[:, -1:]
    widths = torch.tensor([a.shape[1] for a in arrays], dtype=torch.int64)
    return Batch(normalize(torch.from_numpy(out)), widths, list(texts))


def widen_batch(batch: Batch, width: int) -> Batch:
    """`batch` right-padded to `width` as pad_batch pads (each image's last column repeated): the images that
    pad_batch(arrays, texts, min_width=width) makes. Data-parallel training pads every process's shard to
    the width of the whole global batch with it."""
    current = batch.images.shape[-1]
    if width < current:
        raise ValueError(f"width must be at least the batch's width {current}, got {width}")
    if width == current:
        return batch
    # After pad_batch an image's last column is its own last column (or a copy of it), so repeating the
    # batch's last column continues every image exactly as a wider pad_batch would.
    extra = batch.images[..., -1:].expand(-1, -1, -1, width - current)
    return Batch(torch.cat([batch.images, extra], dim=-1), batch.widths, batch.texts)
