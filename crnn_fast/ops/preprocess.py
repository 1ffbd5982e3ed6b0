"""Device-side preprocessing for the recognizer: pack a batch of grayscale images into one buffer (one upload),
then resize to height 32, normalise and pad on the device in one step.

    packed = pack_images(arrays, pin_memory=True)        # on the host
    data, meta = packed.to("cuda")                       # two non-blocking copies
    images = resize_normalize_pad(data, meta, pad_width, meta_host=packed.meta)  # (B, 1, 32, pad_width) float32

Backends: "triton" (crnn_fast/triton/preprocess.py: one launch per batch; CUDA tensors, or CPU tensors under
TRITON_INTERPRET=1), "ref" (crnn_fast/reference/preprocess.py: one F.interpolate per image, any device).
"auto" runs Triton on CUDA once the kernel has passed its GPU tests (crnn_fast._ext.GPU_VALIDATED), the
reference otherwise (crnn_fast._ext.resolve).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._ext import BackendUnavailableError, resolve
from ..formats.image_batch import HEIGHT
from ..reference.preprocess import check_packed, resize_normalize_pad_ref

PREPROCESS_BACKENDS = ("auto", "triton", "ref")
OP_NAME = "resize_normalize_pad"


@functools.cache
def _triton_preprocess():
    """crnn_fast.triton.preprocess, imported on first use (importing triton costs `import crnn_fast` time), or
    None: triton is optional."""
    try:
        from ..triton import preprocess
    except ImportError:
        return None
    return preprocess


@dataclass
class PackedImages:
    """A batch of grayscale uint8 images in one flat buffer; see crnn_fast/reference/preprocess.py."""

    data: torch.Tensor  # (N,) uint8
    meta: torch.Tensor  # (B, 4) int64: offset, h, w, out_w

    def to(self, device: torch.device | str, non_blocking: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.to(device, non_blocking=non_blocking), self.meta.to(device, non_blocking=non_blocking)


def pack_images(arrays: Sequence[np.ndarray], out_widths: Sequence[int], *, pin_memory: bool = False
                ) -> PackedImages:
    """Pack (h, w) uint8 arrays into one buffer; out_widths[i] is the width image i gets at height 32."""
    if len(arrays) != len(out_widths):
        raise ValueError(f"arrays ({len(arrays)}) and out_widths ({len(out_widths)}) must have the same length")
    sizes = []
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2 or 0 in a.shape:
            raise ValueError(f"arrays[{i}] must be a non-empty (h, w) uint8 array, got "
                             f"{getattr(a, 'dtype', type(a))} of shape {getattr(a, 'shape', None)}")
        sizes.append(a.size)
    offsets = np.zeros(len(arrays), dtype=np.int64)
    if arrays:
        np.cumsum(sizes[:-1], out=offsets[1:])
    total = int(offsets[-1] + sizes[-1]) if arrays else 0
    data = torch.empty(total, dtype=torch.uint8, pin_memory=pin_memory)
    flat = data.numpy()
    for a, o, n in zip(arrays, offsets, sizes):
        flat[o: o + n] = a.reshape(-1)
    meta = torch.empty((len(arrays), 4), dtype=torch.int64, pin_memory=pin_memory)
    m = meta.numpy()
    m[:, 0] = offsets
    m[:, 1] = [a.shape[0] for a in arrays]
    m[:, 2] = [a.shape[1] for a in arrays]
    m[:, 3] = out_widths
    return PackedImages(data, meta)


def triton_available(device: torch.device) -> bool:
    module = _triton_preprocess() if device.type in ("cuda", "cpu") else None
    return module is not None and (device.type == "cuda" or module.INTERPRET)


def resize_normalize_pad(data: torch.Tensor, meta: torch.Tensor, pad_width: int, height: int = HEIGHT,
                         backend: str = "auto", *, meta_host: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1, height, pad_width) float32 model input from packed images; see the module docstring.
    meta is checked (every image inside data, out_w <= pad_width) before a kernel reads it; give meta_host, the
    host tensor meta was copied from, to check a device meta without waiting for the device."""
    device = data.device if isinstance(data, torch.Tensor) else torch.device("cpu")

    def check(name: str) -> Exception | None:
        if name == "triton" and not triton_available(device):
            return BackendUnavailableError("backend='triton' needs the triton package and CUDA tensors (or CPU "
                                           "tensors with TRITON_INTERPRET=1 set before triton is imported)")
        return None

    backend = resolve(OP_NAME, backend, device, backends=PREPROCESS_BACKENDS, check=check, fallback="ref")
    check_packed(data, meta, pad_width, height, meta_host)
    if backend == "ref":
        return resize_normalize_pad_ref(data, meta, pad_width, height)
    return _triton_preprocess().resize_normalize_pad_triton(data, meta, pad_width, height)
