"""Eager reference of the recognizer's device-side preprocessing: resize to height 32, normalise, pad.

Input is a batch of grayscale images packed into one flat uint8 buffer (one upload per batch):
    data  (N,) uint8       the pixels of all images, each row-major, one after another
    meta  (B, 4) int64     per image: offset into data, height h, width w, output width out_w
Output (B, 1, height, pad_width) float32: each image resized to (height, out_w) with antialiased bilinear
filtering (the same filter as PIL's BILINEAR resize, which training uses), normalised to [-1, 1] like
crnn_fast.formats.image_batch.normalize, and right-padded to pad_width by repeating its last column (as pad_batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..formats.image_batch import HEIGHT, normalize


def check_packed(data: torch.Tensor, meta: torch.Tensor, pad_width: int, height: int = HEIGHT,
                 meta_host: torch.Tensor | None = None) -> list[list[int]]:
    """Check the arguments; returns meta's rows as lists. meta_host: a host copy of meta, so that checking a
    device meta needs no device-to-host copy (and no synchronisation)."""
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 1:
        raise ValueError(f"data must be a 1-D uint8 tensor, got {getattr(data, 'dtype', type(data))} "
                         f"of shape {tuple(getattr(data, 'shape', ()))}")
    if not isinstance(meta, torch.Tensor) or meta.dtype != torch.int64 or meta.dim() != 2 or meta.shape[1] != 4:
        raise ValueError(f"meta must be a (B, 4) int64 tensor, got {getattr(meta, 'dtype', type(meta))} "
                         f"of shape {tuple(getattr(meta, 'shape', ()))}")
    if meta.device != data.device:
        raise ValueError(f"data ({data.device}) and meta ({meta.device}) must be on the same device")
    if not isinstance(pad_width, int) or pad_width < 1:
        raise ValueError(f"pad_width must be a positive int, got {pad_width!r}")
    if not isinstance(height, int) or height < 1:
        raise ValueError(f"height must be a positive int, got {height!r}")
    if meta_host is not None and meta_host.shape != meta.shape:
        raise ValueError(f"meta_host must have meta's shape {tuple(meta.shape)}, got {tuple(meta_host.shape)}")
    rows = (meta if meta_host is None else meta_host).cpu().tolist()
    for b, (offset, h, w, out_w) in enumerate(rows):
        if h < 1 or w < 1 or not 1 <= out_w <= pad_width or offset < 0 or offset + h * w > data.numel():
            raise ValueError(f"meta[{b}] = {(offset, h, w, out_w)} does not describe an image inside data "
                             f"({data.numel()} bytes) that fits pad_width {pad_width}")
    return rows


def resize_normalize_pad_ref(data: torch.Tensor, meta: torch.Tensor, pad_width: int,
                             height: int = HEIGHT) -> torch.Tensor:
    """One F.interpolate(antialias=True) per image; see the module docstring for the layout."""
    rows = check_packed(data, meta, pad_width, height)
    out = torch.empty((len(rows), 1, height, pad_width), dtype=torch.float32, device=data.device)
    for b, (offset, h, w, out_w) in enumerate(rows):
        src = data[offset: offset + h * w].view(1, 1, h, w).float()
        if (h, w) != (height, out_w):
            src = F.interpolate(src, size=(height, out_w), mode="bilinear", antialias=True, align_corners=False)
        out[b, :, :, :out_w] = src[0]
        out[b, :, :, out_w:] = src[0, :, :, -1:]
    return normalize(out)
