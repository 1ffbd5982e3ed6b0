"""Labelled text-image datasets and the image preprocessing the model expects.

- FolderDataset: a folder with labels.tsv, one `file<TAB>text` per line (file relative to the folder);
- LmdbDataset: the deep-text-recognition-benchmark LMDB layout: `num-samples`, and for i = 1..N
  `image-%09d` (encoded image bytes) and `label-%09d` (UTF-8 text).
Both return (PIL image, label) for index 0..N-1; `label(i)` reads the label alone.

prepare_image() turns a path, a PIL image or a numpy array into the model's (32, W) uint8 grayscale.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import random
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..formats.image_batch import HEIGHT, Batch, pad_batch

LABELS_FILE = "labels.tsv"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pbm", ".pgm", ".ppm")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # WebDataset-style shards: tars of image members
MAX_WIDTH = 4096  # widest model input (at height 32); a wider line must be cut into pieces first


class ImageError(ValueError):
    """An image that cannot be read or used (unreadable, truncated, empty, absurd shape or dtype)."""


# -- preprocessing ---------------------------------------------------------------------------------------


def open_regular_file(path: str | os.PathLike):
    """`path` opened for binary reading, if it is a regular file; else ImageError. A FIFO would block the reader
    until a writer comes (forever) and a device can stream without end. Opening with O_NONBLOCK returns at once
    for a FIFO, and fstat on the open descriptor decides, so nothing can be swapped in between check and read."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError(f"{name!r}: no such file") from None
    except OSError as e:
        raise ImageError(f"{name!r}: cannot open ({type(e).__name__}: {e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                    "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "not a plain file")
            raise ImageError(f"{name!r}: is {kind}; only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def line_reduce_factor(width: int, height_px: int, height: int = HEIGHT, *, max_width: int = MAX_WIDTH) -> int:
    """For an image of width x height_px: the integer factor by which it can be shrunk before resizing to
    `height` without losing detail (1: none), when it is more than 4x too big. Raises ImageError if the line
    would be wider than max_width at `height`: this needs the size alone, which a file's header gives."""
    if width < 1 or height_px < 1:
        raise ImageError(f"image has zero size ({width}x{height_px})")
    new_w = max(1, round(width * height / height_px))
    if new_w > max_width:
        raise ImageError(f"image is {width}x{height_px}: too wide for one text line ({new_w} px at height {height}, "
                         f"max {max_width}); split it into lines or crops first")
    if height_px > 4 * height and width > 4 * new_w:
        return max(1, min(height_px // (2 * height), width // (2 * new_w)))
    return 1


# Modes whose integer reduce commutes with to_gray (up to rounding); others are decoded at full size.
_REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr")


def _decode(img: Image.Image, line: tuple[int, int] | None) -> Image.Image:
    """Decode an opened image. line=(height, max_width): the image is for a text line of that height, so its size
    is checked from the header before decoding, and a huge image is decoded reduced (JPEG: scaled while decoding,
    by draft; other formats: reduced right after decoding, before any mode conversion copies it)."""
    factor = 1
    if line is not None:
        factor = line_reduce_factor(img.width, img.height, line[0], max_width=line[1])
        if factor > 1 and img.format == "JPEG":
            img.draft(img.mode if img.mode in ("L", "RGB") else None,
                      (-(-img.width // factor), -(-img.height // factor)))
    img.load()
    out = img.convert("RGBA") if img.mode in ("P", "PA") else img
    if factor > 1:
        if out.mode == "1":
            out = out.convert("L")
        if out.mode in _REDUCIBLE_MODES:
            factor = line_reduce_factor(out.width, out.height, line[0], max_width=line[1])  # after draft's scaling
            if factor > 1:
                out = out.reduce(factor)
    return out


def open_image(path: str | os.PathLike | bytes) -> Image.Image:
    """Open and fully decode an image file (or the bytes of an encoded image, e.g. from a tar shard or object
    store, or a binary file object); every failure becomes an ImageError naming the file. Only regular files
    are read."""
    return _open_image(path, None)[0]


def _open_image(path, line: tuple[int, int] | None) -> tuple[Image.Image, tuple[int, int]]:
    """(decoded image, its full (width, height) from the header); line: see _decode."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        return _open_encoded(bytes(path), line)
    if not isinstance(path, (str, os.PathLike)):  # a file object
        return _open_encoded(path, line)
    name = os.fspath(path)
    with open_regular_file(name) as f:
        try:
            with Image.open(f) as img:
                return _decode(img, line), img.size
        except ImageError as e:
            raise ImageError(f"{name!r}: {e}") from None
        except Image.DecompressionBombError as e:
            raise ImageError(f"{name!r}: image too large ({e})") from None
        except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError) as e:
            raise ImageError(f"{name!r}: cannot read image ({type(e).__name__}: {e})") from None


def _open_encoded(data, line: tuple[int, int] | None = None) -> tuple[Image.Image, tuple[int, int]]:
    if isinstance(data, bytes):
        if not data:
            raise ImageError("image bytes are empty")
        size = f"{len(data)} bytes"
        data = io.BytesIO(data)
    else:
        size = "file object"
    try:
        with Image.open(data) as img:
            return _decode(img, line), img.size
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"cannot decode image bytes ({size}): not an image format PIL reads") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot decode image bytes ({size}; {type(e).__name__}: {e})") from None


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
        if hi > lo and (hi > 255 or lo < 0):  # outside 0..255: stretch its range (a constant image is clipped)
            arr = (arr - lo) * (255.0 / (hi - lo))
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


def load_line(image, height: int = HEIGHT, *, max_width: int = MAX_WIDTH) -> tuple[np.ndarray, int]:
    """Anything to_gray accepts, as a text line to resize to `height`: (grayscale image, its output width).
    A file's size is checked from its header before decoding (ImageError past max_width), and a huge file is
    decoded reduced; the output width is that of the full-size image either way."""
    size = None
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        image, size = _open_image(image, (height, max_width))
    return plan_resize(to_gray(image), height, max_width=max_width, size=size)


def plan_resize(gray: np.ndarray, height: int = HEIGHT, *, max_width: int = MAX_WIDTH,
                size: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """The host-side part of resizing to `height`: the output width (aspect kept; ImageError past max_width),
    and the image after a cheap integer reduce when it is more than 4x too big (so that a huge image is
    neither filtered at full size nor uploaded to the GPU at full size). size: the (width, height) the image
    had before a reduce at decoding, which sets the output width. Returns (image, output width)."""
    h, w = gray.shape
    full_w, full_h = size or (w, h)
    line_reduce_factor(full_w, full_h, height, max_width=max_width)  # the too-wide check
    new_w = max(1, round(full_w * height / full_h))
    if h > 4 * height and w > 4 * new_w:
        factor = min(h // (2 * height), w // (2 * new_w))
        if factor > 1:
            gray = np.asarray(Image.fromarray(gray).reduce(factor))
    return gray, new_w


def _resize(gray: np.ndarray, new_w: int, height: int, min_width: int) -> np.ndarray:
    img = Image.fromarray(gray)
    if img.size != (new_w, height):
        img = img.resize((new_w, height), Image.BILINEAR)
    out = np.asarray(img)
    if new_w < min_width:
        out = np.pad(out, ((0, 0), (0, min_width - new_w)), mode="edge")
    return np.ascontiguousarray(out)


def resize_to_height(gray: np.ndarray, height: int = HEIGHT, *, max_width: int = MAX_WIDTH,
                     min_width: int = 8) -> np.ndarray:
    """(H, W) uint8 -> (height, W') keeping the aspect ratio; raises ImageError if W' > max_width."""
    gray, new_w = plan_resize(gray, height, max_width=max_width)
    return _resize(gray, new_w, height, min_width)


def prepare_image(image, *, max_width: int = MAX_WIDTH, min_width: int = 8) -> np.ndarray:
    """Anything to_gray accepts -> the model's (32, W) uint8 input (before padding and normalising)."""
    gray, new_w = load_line(image, max_width=max_width)
    return _resize(gray, new_w, HEIGHT, min_width)


# -- inputs ----------------------------------------------------------------------------------------------


def is_shard(path: str) -> bool:
    return path.lower().endswith(SHARD_SUFFIXES)


def iter_input_paths(inputs) -> Iterator[tuple[str, bool]]:
    """(path, found) for every input of `crnn-fast recognize` and its Ray variant: files as given; folders as
    their image files and tar shards (recursive, sorted, walked lazily so a million files are never listed
    at once); globs expanded (recursive with **; everything but folders, so that a FIFO or device named like an
    image is reported rather than skipped). Symbolic links to folders are followed, each real folder once: a
    link loop is walked once, not until the path gets too long. An input that is neither an existing file or
    folder nor a glob matching a file comes back as given with found=False, for the caller to report."""
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            for path in _walk_files(item):
                if path.lower().endswith(IMAGE_EXTENSIONS + SHARD_SUFFIXES):
                    yield path, True
        elif os.path.isfile(item):
            yield item, True
        else:
            found = False
            if glob.has_magic(item):
                for path in sorted(p for p in iter_glob(item) if not os.path.isdir(p)):
                    found = True
                    yield path, True
            if not found:
                yield item, False


def _real_dir(path: str) -> tuple[int, int] | None:
    """The identity of the folder `path` resolves to (device, inode), or None if it is not a readable folder."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _walk_files(root: str) -> Iterator[str]:
    """The non-folder entries under `root`, depth first, sorted, following links to folders, each real folder
    once (a link back to an ancestor, or two links to one folder, would otherwise repeat or never end)."""
    seen = {_real_dir(root)}
    for dirpath, dirnames, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            real = _real_dir(os.path.join(dirpath, name))
            if real is not None and real not in seen:
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept
        for f in sorted(files):
            yield os.path.join(dirpath, f)


def iter_glob(pattern: str) -> Iterator[str]:
    """glob.glob(pattern, recursive=True), lazily (sorted within each folder), except that '**' follows links to
    folders once per real folder: glob itself follows them again and again around a link loop (the same image
    listed dozens of times, or, with two loops, a walk that does not end)."""
    parts = pattern.split(os.sep)
    root = os.sep if parts[0] == "" else ""
    yield from _glob_parts(root, [p for p in parts if p])


def _sorted_entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder or os.curdir) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _glob_parts(base: str, parts: list[str]) -> Iterator[str]:
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if not glob.has_magic(head):
        path = os.path.join(base, head)
        if (os.path.isdir(path) if rest else os.path.lexists(path)):
            yield from _glob_parts(path, rest)
        return
    if head == "**":
        while rest and rest[0] == "**":
            rest = rest[1:]
        for folder in _folders_below(base):  # each '**' walks each real folder below its base once
            if rest:
                yield from _glob_parts(folder, rest)
            else:  # a trailing '**': every folder and file below (the base folder itself as glob writes it)
                if folder != base:
                    yield folder
                elif base:
                    yield os.path.join(base, "")
                for entry in _sorted_entries(folder):
                    if not entry.name.startswith(".") and not _is_dir(entry):
                        yield os.path.join(folder, entry.name)
        return
    hidden = head.startswith(".")  # as glob: '*' does not match a leading dot
    for entry in _sorted_entries(base):
        if (hidden or not entry.name.startswith(".")) and fnmatch.fnmatchcase(entry.name, head):
            if rest and not _is_dir(entry):
                continue
            yield from _glob_parts(os.path.join(base, entry.name), rest)


def _folders_below(base: str, seen: set | None = None) -> Iterator[str]:
    """`base` and every non-hidden folder below it, depth first, each real folder once."""
    seen = set() if seen is None else seen
    real = _real_dir(base or os.curdir)
    if real is None or real in seen:
        return
    seen.add(real)
    yield base
    for entry in _sorted_entries(base):
        if not entry.name.startswith(".") and _is_dir(entry):
            yield from _folders_below(os.path.join(base, entry.name), seen)


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
