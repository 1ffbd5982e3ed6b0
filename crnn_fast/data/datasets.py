"""Labelled text-image datasets and the image preprocessing the model expects.

- FolderDataset: a folder with labels.tsv, one `file<TAB>text` per line (file relative to the folder);
- LmdbDataset: the deep-text-recognition-benchmark LMDB layout: `num-samples`, and for i = 1..N
  `image-%09d` (encoded image bytes) and `label-%09d` (UTF-8 text).
Both return (PIL image, label) for index 0..N-1; `label(i)` reads the label alone.

prepare_image() turns a path, a PIL image or a numpy array into the model's (32, W) uint8 grayscale.
"""

from __future__ import annotations

import glob
import io
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .synth import HEIGHT, Batch, pad_batch

LABELS_FILE = "labels.tsv"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pbm", ".pgm", ".ppm")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # WebDataset-style shards: tars of image members
MAX_WIDTH = 4096  # widest model input (at height 32); a wider line must be cut into pieces first


class ImageError(ValueError):
    """An image that cannot be read or used (unreadable, truncated, empty, absurd shape or dtype)."""


# -- preprocessing ---------------------------------------------------------------------------------------


def open_image(path: str | os.PathLike | bytes) -> Image.Image:
    """Open and fully decode an image file (or the bytes of an encoded image, e.g. from a tar shard or
    object store); every failure becomes an ImageError naming the file."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        return _open_encoded(bytes(path))
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy() if img.mode != "P" else img.convert("RGBA")
    except FileNotFoundError:
        raise ImageError(f"{os.fspath(path)!r}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{os.fspath(path)!r}: is a directory") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{os.fspath(path)!r}: image too large ({e})") from None
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError) as e:
        raise ImageError(f"{os.fspath(path)!r}: cannot read image ({type(e).__name__}: {e})") from None


def _open_encoded(data: bytes) -> Image.Image:
    import io

    if not data:
        raise ImageError("image bytes are empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.copy() if img.mode != "P" else img.convert("RGBA")
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"cannot decode image bytes ({len(data)} bytes): not an image format PIL reads") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot decode image bytes ({len(data)} bytes; {type(e).__name__}: {e})") from None


def _flatten_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white: text images with transparency are almost always dark text on a transparent
    page meant to be shown on a light background."""
    a = alpha.astype(np.float32) / 255.0
    if rgb.ndim == 3:
        a = a[..., None]
    return rgb.astype(np.float32) * a + 255.0 * (1.0 - a)


def to_gray(image) -> np.ndarray:
    """A path / encoded image bytes / PIL image / numpy array -> (H, W) uint8 grayscale. Raises ImageError
    or TypeError."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ImageError(f"image has zero size ({image.width}x{image.height})")
        mode = image.mode
        if mode == "P" or mode == "PA":
            image = image.convert("RGBA")
            mode = "RGBA"
        if mode in ("RGBA", "LA", "RGBa", "La"):
            arr = np.asarray(image.convert("RGBA"))
            gray = _flatten_alpha(np.asarray(image.convert("RGB").convert("L")), arr[..., 3])
            return np.clip(gray + 0.5, 0, 255).astype(np.uint8)
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return _array_to_gray(np.asarray(image))
        if mode != "L":
            image = image.convert("RGB").convert("L") if mode not in ("1",) else image.convert("L")
        return np.asarray(image)
    if isinstance(image, np.ndarray):
        return _array_to_gray(image)
    try:
        import torch

        if isinstance(image, torch.Tensor):
            t = image.detach().cpu()
            if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
                t = t.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
            return _array_to_gray(t.numpy())
    except ImportError:  # pragma: no cover
        pass
    raise TypeError("image must be a path, encoded image bytes, a PIL.Image or a numpy array, "
                    f"got {type(image).__name__}")


def _array_to_gray(arr: np.ndarray) -> np.ndarray:
    if arr.size == 0 or 0 in arr.shape:
        raise ImageError(f"image array has zero size (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0)
    elif np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > 255 or lo < 0 else arr
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ImageError("image array holds NaN or inf")
        arr = arr * 255.0 if arr.max() <= 1.0 and arr.min() >= 0.0 else arr
    else:
        raise ImageError(f"image array dtype {arr.dtype} is not supported (use uint8, uint16 or float)")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3:
        alpha = arr[..., 3] if arr.shape[2] == 4 else None
        rgb = arr[..., :3]
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        if alpha is not None:
            gray = _flatten_alpha(gray, np.clip(alpha, 0, 255))
        arr = gray
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def plan_resize(gray: np.ndarray, height: int = HEIGHT, *, max_width: int = MAX_WIDTH) -> tuple[np.ndarray, int]:
    """The host-side part of resizing to `height`: the output width (aspect kept; ImageError past max_width),
    and the image after a cheap integer reduce when it is more than 4x too big (so that a huge image is
    neither filtered at full size nor uploaded to the GPU at full size). Returns (image, output width)."""
    h, w = gray.shape
    new_w = max(1, round(w * height / h))
    if new_w > max_width:
        raise ImageError(f"image is {w}x{h}: too wide for one text line ({new_w} px at height {height}, "
                         f"max {max_width}); split it into lines or crops first")
    if h > 4 * height and w > 4 * new_w:
        factor = min(h // (2 * height), w // (2 * new_w))
        if factor > 1:
            gray = np.asarray(Image.fromarray(gray).reduce(factor))
    return gray, new_w


def resize_to_height(gray: np.ndarray, height: int = HEIGHT, *, max_width: int = MAX_WIDTH,
                     min_width: int = 8) -> np.ndarray:
    """(H, W) uint8 -> (height, W') keeping the aspect ratio; raises ImageError if W' > max_width."""
    gray, new_w = plan_resize(gray, height, max_width=max_width)
    img = Image.fromarray(gray)
    if img.size != (new_w, height):
        img = img.resize((new_w, height), Image.BILINEAR)
    out = np.asarray(img)
    if new_w < min_width:
        out = np.pad(out, ((0, 0), (0, min_width - new_w)), mode="edge")
    return np.ascontiguousarray(out)


def prepare_image(image, *, max_width: int = MAX_WIDTH, min_width: int = 8) -> np.ndarray:
    """Anything to_gray accepts -> the model's (32, W) uint8 input (before padding and normalising)."""
    return resize_to_height(to_gray(image), max_width=max_width, min_width=min_width)


# -- inputs ----------------------------------------------------------------------------------------------


def is_shard(path: str) -> bool:
    return path.lower().endswith(SHARD_SUFFIXES)


def iter_input_paths(inputs) -> Iterator[tuple[str, bool]]:
    """(path, found) for every input of `crnn-fast recognize` and its Ray variant: files as given; folders as
    their image files and tar shards (recursive, sorted, walked lazily so a million files are never listed
    at once); globs expanded (recursive with **; files only). An input that is neither an existing file or
    folder nor a glob matching a file comes back as given with found=False, for the caller to report."""
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            for dirpath, dirnames, files in os.walk(item):
                dirnames.sort()
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS + SHARD_SUFFIXES):
                        yield os.path.join(dirpath, f), True
        elif os.path.isfile(item):
            yield item, True
        else:
            matches = []
            if glob.has_magic(item):
                matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                yield item, False
            for p in matches:
                yield p, True


# -- datasets --------------------------------------------------------------------------------------------


class FolderDataset:
    """Images in a folder listed by labels.tsv, one `file<TAB>text` per line: the first tab ends the file
    name (relative to the folder), the rest of the line is the text. Lines starting with '#' are skipped."""

    def __init__(self, root: str | os.PathLike, labels_file: str = LABELS_FILE):
        self.root = Path(root)
        path = self.root / labels_file
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist (a folder dataset needs {labels_file} "
                                    "with one 'file<TAB>text' per line)")
        self.items: list[tuple[str, str]] = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line or line.startswith("#"):
                    continue
                if "\t" not in line:
                    raise ValueError(f"{path}:{lineno}: expected 'file<TAB>text', got {line[:80]!r}")
                name, text = line.split("\t", 1)
                self.items.append((name, text))

    def __len__(self) -> int:
        return len(self.items)

    def path(self, index: int) -> Path:
        return self.root / self.items[index][0]

    def label(self, index: int) -> str:
        return self.items[index][1]

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        name, text = self.items[index]
        return open_image(self.root / name), text


_LMDB_ENVS: dict = {}


class LmdbDataset:
    """The deep-text-recognition-benchmark LMDB: num-samples, image-%09d and label-%09d (1-based).

    The environment opens lazily, so the dataset can be handed to DataLoader workers (one env each)."""

    def __init__(self, root: str | os.PathLike):
        self.root = str(root)
        if not os.path.exists(os.path.join(self.root, "data.mdb")):
            raise FileNotFoundError(f"{self.root!r} is not an LMDB folder (no data.mdb)")
        self._env = None
        self._pid = None
        with self._txn() as txn:
            raw = txn.get(b"num-samples")
            if raw is None:
                raise ValueError(f"{self.root!r}: LMDB has no 'num-samples' key (not the deep-text-"
                                 "recognition-benchmark layout)")
            self.n = int(raw.decode())

    def _txn(self):
        import lmdb

        if self._env is None or self._pid != os.getpid():
            # lmdb allows one environment per path and process: share it between dataset objects.
            key = (os.path.realpath(self.root), os.getpid())
            if key not in _LMDB_ENVS:
                _LMDB_ENVS[key] = lmdb.open(self.root, readonly=True, lock=False, readahead=False, meminit=False,
                                            max_readers=64)
            self._env, self._pid = _LMDB_ENVS[key], os.getpid()
        return self._env.begin(write=False)

    def __len__(self) -> int:
        return self.n

    def _check(self, index: int) -> int:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} samples")
        return index % self.n + 1

    def label(self, index: int) -> str:
        key = self._check(index)
        with self._txn() as txn:
            raw = txn.get(b"label-%09d" % key)
        if raw is None:
            raise KeyError(f"{self.root!r}: missing label-{key:09d}")
        return raw.decode("utf-8")

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        key = self._check(index)
        with self._txn() as txn:
            raw_img = txn.get(b"image-%09d" % key)
            raw_label = txn.get(b"label-%09d" % key)
        if raw_img is None or raw_label is None:
            raise KeyError(f"{self.root!r}: missing image-{key:09d} or label-{key:09d}")
        return open_image(io.BytesIO(raw_img)), raw_label.decode("utf-8")


def open_dataset(path: str | os.PathLike):
    """A FolderDataset (folder with labels.tsv) or LmdbDataset (folder with data.mdb)."""
    p = Path(path)
    if (p / LABELS_FILE).exists():
        return FolderDataset(p)
    if (p / "data.mdb").exists():
        return LmdbDataset(p)
    raise FileNotFoundError(f"{str(p)!r} is neither a folder with {LABELS_FILE} nor an LMDB folder (data.mdb)")


# -- writers ---------------------------------------------------------------------------------------------


def _encode_png(image) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_folder(root: str | os.PathLike, items: Iterable[tuple[object, str]], *, prefix: str = "") -> Path:
    """Write (image (PIL or uint8 array), text) items as PNGs plus labels.tsv; returns the folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, text) in enumerate(items):
        if "\n" in text or "\t" in text:
            raise ValueError(f"items[{i}]: text must not contain tabs or newlines: {text!r}")
        name = f"{prefix}{i:06d}.png"
        (root / name).write_bytes(_encode_png(image))
        lines.append(f"{name}\t{text}\n")
    (root / LABELS_FILE).write_text("".join(lines), encoding="utf-8")
    return root


def write_lmdb(root: str | os.PathLike, items: Iterable[tuple[object, str]], *, map_size: int = 1 << 30) -> Path:
    """Write (image, text) items as a deep-text-recognition-benchmark LMDB (PNG-encoded images)."""
    import lmdb

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(root), map_size=map_size)
    n = 0
    with env.begin(write=True) as txn:
        for n, (image, text) in enumerate(items, 1):
            data = image if isinstance(image, bytes) else _encode_png(image)
            txn.put(b"image-%09d" % n, data)
            txn.put(b"label-%09d" % n, text.encode("utf-8"))
        txn.put(b"num-samples", str(n).encode())
    env.close()
    return root


# -- training batches from a dataset -----------------------------------------------------------------------


def padded_batches(dataset: Sequence, batch_size: int, *, seed: int = 0, start_batch: int = 0, charset=None,
                   pool_batches: int = 8, rank: int = 0, world_size: int = 1):
    """Endless shuffled, width-bucketed padded Batches from a labelled dataset (epoch after epoch).
    Samples whose label has characters outside `charset` or whose image is unreadable are skipped.

    rank, world_size: data-parallel training. batch_size is then the global batch B; every process walks
    the same global batches and yields rows [rank * b, (rank + 1) * b) of each, b = B / world_size, padded
    to the width of the whole global batch: the shards of all ranks, concatenated in rank order, are the
    batch one process would get. (Each process decodes the whole pool, since the widths of all its images
    decide which images share a batch.)"""
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    if not (isinstance(world_size, int) and world_size >= 1):
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not (isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
    if batch_size % world_size != 0:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of world_size ({world_size})")
    shard = batch_size // world_size
    per_epoch = max(1, n // batch_size)
    epoch = start_batch // per_epoch
    skip = start_batch % per_epoch
    while True:
        order = list(range(n))
        random.Random(f"{seed}/{epoch}").shuffle(order)
        for lo in range(0, per_epoch * batch_size, batch_size * pool_batches):
            samples = []
            for i in order[lo: lo + batch_size * pool_batches]:
                try:
                    image, text = dataset[i]
                    if charset is not None and any(c not in charset for c in text):
                        continue
                    if not text:
                        continue
                    samples.append((prepare_image(image), text))
                except (ImageError, KeyError):
                    continue
            samples.sort(key=lambda s: s[0].shape[1])
            for b in range(0, len(samples) - batch_size + 1, batch_size):
                if skip > 0:
                    skip -= 1
                    continue
                chunk = samples[b: b + batch_size]
                width = max(8, max(s[0].shape[1] for s in chunk))  # pad_batch's width for the whole chunk
                chunk = chunk[rank * shard: (rank + 1) * shard]
                yield pad_batch([s[0] for s in chunk], [s[1] for s in chunk], min_width=width)
        epoch += 1


__all__ = ["Batch", "FolderDataset", "ImageError", "LmdbDataset", "open_dataset", "open_image", "padded_batches",
           "prepare_image", "resize_to_height", "to_gray", "write_folder", "write_lmdb", "IMAGE_EXTENSIONS"]
