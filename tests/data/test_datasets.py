import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from crnn_fast.data import Charset
from crnn_fast.data.datasets import (
    FolderDataset,
    ImageError,
    LmdbDataset,
    open_dataset,
    padded_batches,
    prepare_image,
    resize_to_height,
    to_gray,
    write_folder,
    write_lmdb,
)


def _items(n=5):
    rng = np.random.default_rng(0)
    texts = ["hello", "World 42", "a\u00a0b".replace("\u00a0", " "), "$3.50", "x"][:n]
    return [(rng.integers(0, 256, (20 + 3 * i, 40 + 10 * i), dtype=np.uint8), t) for i, t in enumerate(texts)]


def test_folder_round_trip(tmp_path):
    items = _items()
    write_folder(tmp_path / "f", items)
    ds = FolderDataset(tmp_path / "f")
    assert len(ds) == len(items)
    for i, (array, text) in enumerate(items):
        image, label = ds[i]
        assert label == text == ds.label(i)
        assert np.array_equal(np.asarray(image), array)
    assert isinstance(open_dataset(tmp_path / "f"), FolderDataset)


def test_folder_labels_with_tabs_and_comments(tmp_path):
    Image.new("L", (10, 10), 255).save(tmp_path / "a.png")
    (tmp_path / "labels.tsv").write_text("# a comment\na.png\ttext\twith tab\n\n")
    ds = FolderDataset(tmp_path)
    assert len(ds) == 1 and ds.label(0) == "text\twith tab"
    (tmp_path / "labels.tsv").write_text("no tab here\n")
    with pytest.raises(ValueError, match="labels.tsv:1"):
        FolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="labels.tsv"):
        FolderDataset(tmp_path / "missing")


def test_lmdb_round_trip(tmp_path):
    pytest.importorskip("lmdb")
    items = _items()
    write_lmdb(tmp_path / "db", items, map_size=1 << 24)
    ds = LmdbDataset(tmp_path / "db")
    assert len(ds) == len(items)
    for i, (array, text) in enumerate(items):
        image, label = ds[i]
        assert label == text == ds.label(i)
        assert np.array_equal(np.asarray(image), array)
    assert ds[-1][1] == items[-1][1]
    with pytest.raises(IndexError):
        ds[len(items)]
    assert isinstance(open_dataset(tmp_path / "db"), LmdbDataset)


def test_lmdb_is_one_based_benchmark_layout(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    buf = io.BytesIO()
    Image.new("L", (30, 10), 0).save(buf, format="PNG")
    env = lmdb.open(str(tmp_path), map_size=1 << 22)
    with env.begin(write=True) as txn:
        txn.put(b"num-samples", b"1")
        txn.put(b"image-000000001", buf.getvalue())
        txn.put(b"label-000000001", "caf\u00e9".encode())
    env.close()
    ds = LmdbDataset(tmp_path)
    image, label = ds[0]
    assert image.size == (30, 10) and label == "caf\u00e9"


def test_open_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither"):
        open_dataset(tmp_path)


@pytest.mark.parametrize("make", [
    lambda: Image.new("L", (50, 20), 200),
    lambda: Image.new("RGB", (50, 20), (10, 200, 30)),
    lambda: Image.new("RGBA", (50, 20), (0, 0, 0, 0)),
    lambda: Image.new("LA", (50, 20)),
    lambda: Image.new("P", (50, 20)),
    lambda: Image.new("1", (50, 20)),
    lambda: Image.new("I;16", (50, 20)),
    lambda: Image.new("I", (50, 20)),
    lambda: Image.new("F", (50, 20)),
    lambda: Image.new("CMYK", (50, 20)),
    lambda: np.zeros((20, 50), np.uint8),
    lambda: np.full((20, 50), 65535, np.uint16),
    lambda: np.zeros((20, 50, 1), np.uint8),
    lambda: np.zeros((20, 50, 3), np.uint8),
    lambda: np.zeros((20, 50, 4), np.uint8),
    lambda: np.random.rand(20, 50),
    lambda: np.ones((20, 50), bool),
])
def test_prepare_image_kinds(make):
    out = prepare_image(make())
    assert out.dtype == np.uint8 and out.shape == (32, 80)


def test_rgba_transparent_is_white_and_uint16_scaled():
    assert to_gray(Image.new("RGBA", (4, 4), (0, 0, 0, 0))).min() == 255
    assert to_gray(np.full((4, 4), 65535, np.uint16)).min() == 255


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 10), np.uint8), "zero size"),
    (np.zeros((5, 5, 7), np.uint8), "shape"),
    (np.full((5, 5), np.nan), "NaN"),
    (np.zeros((5, 5), np.complex64), "dtype"),
    (Image.new("L", (20000, 20)), "too wide"),
])
def test_prepare_image_errors(bad, match):
    with pytest.raises(ImageError, match=match):
        prepare_image(bad)


def test_bad_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("L", (200, 60), 128).save(buf, format="PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[:60])
    for name, match in [("empty.png", "cannot read"), ("trunc.png", "cannot read|truncated"),
                        ("missing.png", "no such file")]:
        with pytest.raises(ImageError, match=match):
            prepare_image(tmp_path / name)
    with pytest.raises(TypeError):
        prepare_image(42)


def test_huge_image_downscales():
    out = resize_to_height(np.zeros((3000, 9000), np.uint8))
    assert out.shape == (32, 96)


def test_padded_batches_shards_make_the_global_batch(tmp_path):
    rng = np.random.default_rng(1)
    items = [(rng.integers(0, 256, (32, int(rng.integers(10, 90))), dtype=np.uint8), f"w{i}") for i in range(20)]
    dataset = FolderDataset(write_folder(tmp_path, items))
    whole = padded_batches(dataset, 6, seed=2, pool_batches=2)
    shards = [padded_batches(dataset, 6, seed=2, pool_batches=2, rank=r, world_size=3) for r in range(3)]
    for _ in range(7):  # across pools and epochs
        batch, parts = next(whole), [next(s) for s in shards]
        # Concatenated in rank order, the shards are the single-process batch, padding included.
        assert torch.equal(torch.cat([p.images for p in parts]), batch.images)
        assert [t for p in parts for t in p.texts] == batch.texts
    resumed = next(padded_batches(dataset, 6, seed=2, pool_batches=2, start_batch=7, rank=1, world_size=3))
    assert resumed.texts == next(shards[1]).texts
    with pytest.raises(ValueError, match=r"batch_size \(6\) must be a multiple of world_size \(4\)"):
        next(padded_batches(dataset, 6, rank=0, world_size=4))
    with pytest.raises(ValueError, match="rank"):
        next(padded_batches(dataset, 6, rank=3, world_size=3))


def test_padded_batches_from_folder(tmp_path):
    write_folder(tmp_path, _items() + [(np.zeros((10, 10), np.uint8), "caf\u00e9")])
    it = padded_batches(FolderDataset(tmp_path), 2, charset=Charset.printable_ascii())
    for _ in range(4):
        batch = next(it)
        assert batch.images.shape[:3] == (2, 1, 32) and all("\u00e9" not in t for t in batch.texts)


@pytest.fixture
def deadline():
    """Fails a test that blocks (on a FIFO, in a walk that does not end) instead of hanging the run."""
    import signal

    class Blocked(BaseException):  # not an OSError (glob and os.walk swallow those), nor any Exception
        pass

    def expired(signum, frame):
        raise Blocked("the call did not return within the deadline")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_only_regular_files_are_read(tmp_path, deadline):
    import os

    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="is a FIFO; only regular files are read"):
        to_gray(fifo)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="is a directory"):
        to_gray(tmp_path / "d.png")
    with pytest.raises(ImageError, match="is a device"):
        to_gray("/dev/zero")


def test_constant_integer_arrays_outside_0_255():
    """A constant image has no range to stretch: it is clipped (it used to divide by zero)."""
    assert (to_gray(np.full((20, 50), 300, np.int32)) == 255).all()
    assert (to_gray(np.full((20, 50), -7, np.int64)) == 0).all()
    assert prepare_image(np.full((20, 50), 300, np.int16)).shape == (32, 80)


def _png_header(width, height):
    """A PNG signature and IHDR claiming width x height (8-bit gray), and the first bytes of its pixel data."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 1 << 20) + b"IDAT" + b"\x78\x9c"  # data cut short


def test_too_wide_is_known_from_the_header(tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(_png_header(200_000, 100))  # nothing to decode: only the header can say it is too wide
    with pytest.raises(ImageError, match="200000x100: too wide"):
        prepare_image(path)
    with pytest.raises(ImageError, match="too wide"):
        prepare_image(path.read_bytes())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_huge_files_decode_reduced_to_the_same_line(tmp_path, fmt):
    """A huge file is decoded reduced (JPEG while decoding, others right after); the line it gives matches
    resizing the fully decoded image, within rounding."""
    rng = np.random.default_rng(0)
    small = np.kron(rng.integers(0, 2, (4, 40)) * 255, np.ones((100, 100))).astype(np.uint8)  # (400, 4000)
    path = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(small).convert("RGB").save(path, format=fmt, quality=95)
    full = resize_to_height(np.asarray(Image.open(path).convert("L")))
    reduced = prepare_image(path)
    assert reduced.shape == full.shape == (32, 320)
    assert np.abs(reduced.astype(int) - full).mean() < 6


def _tree(tmp_path):
    import os

    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        Image.new("L", (8, 8)).save(d / name)
    os.symlink(d, d / "loop")  # back to its own ancestor
    os.symlink(d, d / "sub" / "loop2")
    other = tmp_path / "other"
    other.mkdir()
    Image.new("L", (8, 8)).save(other / "c.png")
    os.symlink(other, d / "linked")
    return d


def test_globs_follow_each_real_folder_once(tmp_path, deadline):
    from crnn_fast.data.datasets import iter_input_paths

    d = _tree(tmp_path)
    found = [p for p, ok in iter_input_paths([str(d / "**" / "*.png")]) if ok]
    assert sorted(os.path.realpath(p) for p in found) == sorted(
        os.path.realpath(p) for p in (d / "a.png", d / "sub" / "b.png", tmp_path / "other" / "c.png"))


def test_folder_walks_follow_each_real_folder_once(tmp_path, deadline):
    from crnn_fast.data.datasets import iter_input_paths

    d = _tree(tmp_path)
    found = [os.path.relpath(p, d) for p, ok in iter_input_paths([str(d)])]
    assert found == ["a.png", "linked/c.png", "sub/b.png"]


def test_iter_glob_matches_glob_without_links(tmp_path):
    """Where there is no link to a folder, iter_glob lists what glob.glob(recursive=True) lists (folders aside:
    glob writes a trailing '**' match on a file as 'file/')."""
    import glob
    import random

    from crnn_fast.data.datasets import iter_glob

    rng = random.Random(0)
    names = ["a", "b", ".h", "c.png", "d.PNG", "e.jpg", ".x.png"]

    def build(folder, depth):
        for name in rng.sample(names, rng.randint(1, 5)):
            path = folder / name
            if depth < 3 and rng.random() < 0.5 and "." not in name[1:]:
                path.mkdir(exist_ok=True)
                build(path, depth + 1)
            elif not path.exists():
                path.write_bytes(b"")

    build(tmp_path, 0)
    for pattern in ["**/*.png", "*/*.png", "**", "a/**/*.png", "**/a/*", "*", "**/*", ".h/**/*.png", "*/**/c.png",
                    "a/**/b/**/*.png", "[ab]/*.png", "**/.x.png", "a/*/", "**/"]:
        pattern = str(tmp_path / pattern)
        expected = sorted(p for p in glob.glob(pattern, recursive=True) if not os.path.isdir(p))
        assert sorted(p for p in iter_glob(pattern) if not os.path.isdir(p)) == expected, pattern
