"""The recognizer's device-side preprocessing in one Triton launch per batch: resize to height 32 (antialiased
bilinear, torch's / PIL's filter), normalise to [-1, 1], right-pad by repeating the last column.

Layout as crnn_fast/reference/preprocess.py: data (N,) uint8 packed images, meta (B, 4) int64 rows of
(offset, h, w, out_w), out (B, 1, HEIGHT, pad_width) float32.

One program per (image, block of BLOCK_X output columns) computes all HEIGHT rows of its block. The filter
is the separable triangle filter of torch's antialiased bilinear interpolation: for an output coordinate i
at scale s = in / out, the centre is (i + 0.5) s, the support max(s, 1), the taps are the input pixels
j in [floor(centre - support + 0.5), floor(centre + support + 0.5)) clipped to the image, with weight
max(0, 1 - |(j - centre + 0.5) / max(s, 1)|), normalised by their sum. A program loops over the <= 2 support + 1
vertical and horizontal taps of its image (runtime bounds: a batch mixes scales). Columns past out_w take
column out_w - 1's value, which is the padding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction


@triton.jit
def _tap_window(i, scale, in_size):
    """(first tap, end tap, centre, 1 / support) of output coordinates i (a vector) for one axis."""
    support = tl.maximum(scale, 1.0)
    centre = (i.to(tl.float32) + 0.5) * scale
    first = tl.maximum(tl.floor(centre - support + 0.5), 0.0).to(tl.int32)
    end = tl.minimum(tl.floor(centre + support + 0.5).to(tl.int32), in_size)
    return first, end, centre, 1.0 / support


@triton.jit
def _tap_weight(j, end, centre, inv_support):
    w = tl.maximum(1.0 - tl.abs((j.to(tl.float32) - centre + 0.5) * inv_support), 0.0)
    return tl.where(j < end, w, 0.0)


@triton.jit
def _resize_normalize_pad_kernel(data_ptr, meta_ptr, out_ptr, pad_width, HEIGHT: tl.constexpr,
                                 BLOCK_X: tl.constexpr):
    b = tl.program_id(0)
    block = tl.program_id(1)
    offset = tl.load(meta_ptr + b * 4)
    h = tl.load(meta_ptr + b * 4 + 1).to(tl.int32)
    w = tl.load(meta_ptr + b * 4 + 2).to(tl.int32)
    out_w = tl.load(meta_ptr + b * 4 + 3).to(tl.int32)

    rows = tl.arange(0, HEIGHT)
    cols = block * BLOCK_X + tl.arange(0, BLOCK_X)
    src_cols = tl.minimum(cols, out_w - 1)  # the padding repeats the last column
    scale_y = h.to(tl.float32) / HEIGHT
    scale_x = w.to(tl.float32) / out_w.to(tl.float32)
    y0, y_end, y_centre, y_inv = _tap_window(rows, scale_y, h)
    x0, x_end, x_centre, x_inv = _tap_window(src_cols, scale_x, w)
    taps_y = tl.ceil(2.0 * tl.maximum(scale_y, 1.0)).to(tl.int32) + 1
    taps_x = tl.ceil(2.0 * tl.maximum(scale_x, 1.0)).to(tl.int32) + 1

    acc = tl.zeros((HEIGHT, BLOCK_X), dtype=tl.float32)
    sum_y = tl.zeros((HEIGHT,), dtype=tl.float32)
    sum_x = tl.zeros((BLOCK_X,), dtype=tl.float32)
    for tx in range(0, taps_x):
        sum_x += _tap_weight(x0 + tx, x_end, x_centre, x_inv)
    for ty in range(0, taps_y):
        iy = y0 + ty
        wy = _tap_weight(iy, y_end, y_centre, y_inv)
        sum_y += wy
        row_ptr = data_ptr + offset + (tl.minimum(iy, h - 1) * w)[:, None]
        for tx in range(0, taps_x):
            ix = x0 + tx
            wx = _tap_weight(ix, x_end, x_centre, x_inv)
            pixels = tl.load(row_ptr + tl.minimum(ix, w - 1)[None, :]).to(tl.float32)
            acc += (wy[:, None] * wx[None, :]) * pixels
    value = acc / (sum_y[:, None] * sum_x[None, :]) * (1.0 / 127.5) - 1.0
    out = out_ptr + b * (HEIGHT * pad_width) + rows[:, None] * pad_width + cols[None, :]
    tl.store(out, value, mask=(cols < pad_width)[None, :])


INTERPRET = isinstance(_resize_normalize_pad_kernel, InterpretedFunction)
BLOCK_X = 64


def resize_normalize_pad_triton(data: torch.Tensor, meta: torch.Tensor, pad_width: int,
                                height: int = 32) -> torch.Tensor:
    """Checked by the caller (crnn_fast.ops.preprocess); meta must describe images inside data."""
    if height & (height - 1):
        raise ValueError(f"height must be a power of two for the Triton kernel, got {height}")
    B = meta.shape[0]
    out = torch.empty((B, 1, height, pad_width), dtype=torch.float32, device=data.device)
    if B:
        grid = (B, triton.cdiv(pad_width, BLOCK_X))
        _resize_normalize_pad_kernel[grid](data, meta.contiguous(), out, pad_width, HEIGHT=height, BLOCK_X=BLOCK_X)
    return out
