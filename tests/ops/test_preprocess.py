"""Device-side preprocessing (resize to height 32, normalise, pad) against PIL and between backends."""

import numpy as np
import pytest
import torch

from crnn_fast.data.datasets import plan_resize, resize_to_height
from crnn_fast.ops.preprocess import pack_images, resize_normalize_pad, triton_available

# (h, w) cases: exact height, down- and upscaling, 1-pixel images, tall narrow, very wide, big (reduced on the host)
SHAPES = [(32, 100), (40, 7), (100, 333), (17, 50), (1, 5), (64, 64), (33, 1000), (5, 1), (300, 2000)]


def _smooth_random(rng, h, w):
    """Random pixels with some spatial correlation (pure noise would exaggerate rounding differences)."""
    a = rng.integers(0, 256, (h + 2, w + 2)).astype(np.float32)
    a = (a[:-2, :-2] + a[1:-1, 1:-1] + a[2:, 2:]) / 3
    return a.astype(np.uint8)


def _batch(shapes, seed=0):
    rng = np.random.default_rng(seed)
    planned = [plan_resize(_smooth_random(rng, h, w)) for h, w in shapes]
    return [p for p, _ in planned], [w for _, w in planned]


def test_reference_matches_pil_within_rounding():
    arrays, widths = _batch(SHAPES)
    packed = pack_images(arrays, widths)
    pad_width = max(widths) + 7
    out = resize_normalize_pad(packed.data, packed.meta, pad_width, backend="ref")
    assert out.shape == (len(SHAPES), 1, 32, pad_width) and out.dtype == torch.float32
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SHAPES):
        pil = resize_to_height(_smooth_random(rng, h, w), min_width=1).astype(np.float32)  # the host path
        ours = (out[i, 0, :, : widths[i]].numpy() + 1.0) * 127.5
        assert pil.shape == ours.shape
        # PIL rounds to uint8 (after each pass of its separable filter); the float result is within ~1 level
        assert np.abs(pil - ours).max() <= 1.5, (h, w)
        assert np.abs(pil - ours).mean() <= 0.5, (h, w)
        # padding repeats the last column
        last = out[i, 0, :, widths[i] - 1: widths[i]]
        assert torch.equal(out[i, 0, :, widths[i]:], last.expand(-1, pad_width - widths[i]))


@pytest.mark.skipif(not triton_available(torch.device("cpu")), reason="needs triton with TRITON_INTERPRET=1")
@pytest.mark.parametrize("shapes", [[(32, 40), (20, 9), (45, 130)], [(1, 3)], [(7, 2), (64, 30)]])
def test_triton_matches_reference(shapes):
    arrays, widths = _batch(shapes, seed=len(shapes))
    packed = pack_images(arrays, widths)
    pad_width = max(widths) + 70  # more than one column block, padding included
    ref = resize_normalize_pad(packed.data, packed.meta, pad_width, backend="ref")
    tri = resize_normalize_pad(packed.data, packed.meta, pad_width, backend="triton")
    torch.testing.assert_close(tri, ref, atol=2e-5, rtol=0)


def test_pack_images_layout():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    b = np.full((1, 4), 9, np.uint8)
    packed = pack_images([a, b], [48, 128])
    assert packed.data.tolist() == [0, 1, 2, 3, 4, 5, 9, 9, 9, 9]
    assert packed.meta.tolist() == [[0, 2, 3, 48], [6, 1, 4, 128]]


@pytest.mark.parametrize("bad, match", [
    (dict(arrays=[np.zeros((2, 2), np.float32)], widths=[4]), "arrays\\[0\\]"),
    (dict(arrays=[np.zeros((0, 2), np.uint8)], widths=[4]), "arrays\\[0\\]"),
    (dict(arrays=[np.zeros((2, 2), np.uint8)], widths=[4, 5]), "out_widths"),
])
def test_pack_images_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        pack_images(bad["arrays"], bad["widths"])


def test_meta_is_checked_from_its_host_copy():
    packed = pack_images([np.zeros((4, 4), np.uint8)], [32])
    bad_host = packed.meta.clone()
    bad_host[0, 0] = 10**9
    with pytest.raises(ValueError, match="meta\\[0\\]"):
        resize_normalize_pad(packed.data, packed.meta, 32, meta_host=bad_host)
    with pytest.raises(ValueError, match="meta_host"):
        resize_normalize_pad(packed.data, packed.meta, 32, meta_host=bad_host[:, :2])


def test_resize_rejects_bad_arguments():
    packed = pack_images([np.zeros((4, 4), np.uint8)], [32])
    with pytest.raises(ValueError, match="pad_width"):
        resize_normalize_pad(packed.data, packed.meta, 0)
    with pytest.raises(ValueError, match="pad_width"):
        resize_normalize_pad(packed.data, packed.meta, 16)  # narrower than the image's output width
    with pytest.raises(ValueError, match="meta"):
        resize_normalize_pad(packed.data, packed.meta[:, :3], 32)
    bad_meta = packed.meta.clone()
    bad_meta[0, 1] = 100  # taller than the data holds
    with pytest.raises(ValueError, match="meta\\[0\\]"):
        resize_normalize_pad(packed.data, bad_meta, 32)
    with pytest.raises(ValueError, match="data"):
        resize_normalize_pad(packed.data.float(), packed.meta, 32)
    with pytest.raises(ValueError, match="backend"):
        resize_normalize_pad(packed.data, packed.meta, 32, backend="cuda")


@pytest.mark.cuda
def test_triton_matches_reference_on_the_gpu():
    shapes = SHAPES + [(48, 3000), (16, 16), (200, 40)]
    arrays, widths = _batch(shapes, seed=5)
    packed = pack_images(arrays, widths, pin_memory=True)
    data, meta = packed.to("cuda")
    pad_width = max(widths) + 33
    ref = resize_normalize_pad(data, meta, pad_width, backend="ref")
    tri = resize_normalize_pad(data, meta, pad_width, backend="triton", meta_host=packed.meta)
    torch.testing.assert_close(tri, ref, atol=2e-5, rtol=0)
    cpu = resize_normalize_pad(packed.data, packed.meta, pad_width, backend="ref")
    torch.testing.assert_close(tri.cpu(), cpu, atol=2e-5, rtol=0)
