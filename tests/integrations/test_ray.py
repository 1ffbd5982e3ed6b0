"""crnn_fast.integrations.ray on a local 2-CPU Ray cluster (one per module: starting Ray takes seconds).

Every Ray Data run starts its actors afresh (torch import + model load), so the module keeps to three runs:
map_batches against Recognizer.recognize, and main() writing JSON lines and Parquet. The class's column handling
and the argument checks are tested in this process, without a run.
"""

import gzip
import io
import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crnn_fast.integrations import ray as ray_integration
from crnn_fast.recognize import Recognizer

HELDOUT = Path(__file__).resolve().parents[2] / "benchmarks" / "heldout"
PER_SUBSET = 60  # x 4 subsets: 240 held-out images


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason='needs the ray extra: pip install "crnn_fast[ray]"')
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
             configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def heldout_paths():
    paths = [str(p) for subset in sorted(HELDOUT.iterdir()) if subset.is_dir()
             for p in sorted(subset.glob("*.png"))[:PER_SUBSET]]
    assert len(paths) == 4 * PER_SUBSET, "benchmarks/heldout/*/ should hold the committed held-out PNGs"
    return paths


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    corrupt, empty = folder / "corrupt.png", folder / "empty.png"
    corrupt.write_bytes(b"this is not an image, just text with a .png name")
    empty.write_bytes(b"")
    return [str(corrupt), str(empty)]


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer.from_pretrained(device="cpu", batch_size=4)


def test_map_batches_gives_the_recognizers_results_and_errors_for_bad_images(ray_cluster, heldout_paths, bad_files):
    ray = ray_cluster
    from ray.data import ActorPoolStrategy

    from crnn_fast.integrations.ray import RayRecognizer

    # One image per forward pass on both sides: the CNN sees the padding of a batch's narrower images, so results
    # depend (slightly) on which images share a batch, and Ray forms its batches from blocks of its own choosing.
    inputs = heldout_paths[:100] + bad_files + heldout_paths[100:]
    dataset = ray.data.read_binary_files(inputs, include_paths=True).map_batches(
        RayRecognizer, fn_constructor_kwargs={"device": "cpu", "batch_size": 1}, batch_size=64, batch_format="numpy",
        compute=ActorPoolStrategy(size=1), num_cpus=1)
    rows = {row["path"]: row for row in dataset.take_all()}
    assert sorted(rows) == sorted(inputs)
    assert set(next(iter(rows.values()))) == {"path", "text", "confidence", "error"}

    expected = Recognizer.from_pretrained(device="cpu", batch_size=1).recognize(heldout_paths)
    assert all(r.error is None for r in expected)
    texts = [rows[p]["text"] for p in heldout_paths]
    assert texts == [r.text for r in expected]
    confidences = np.array([rows[p]["confidence"] for p in heldout_paths])
    np.testing.assert_allclose(confidences, [r.confidence for r in expected], rtol=0, atol=1e-5)
    assert all(rows[p]["error"] is None for p in heldout_paths)

    corrupt, empty = (rows[p] for p in bad_files)
    assert "cannot decode" in corrupt["error"]
    assert "empty" in empty["error"]
    for row in (corrupt, empty):
        assert row["text"] == "" and row["confidence"] == 0.0


def test_image_column_of_arrays_and_pandas_batches(recognizer):
    """The class in this process (what each actor runs): decoded arrays in `image`, as a ragged object column,
    as one (B, H, W) tensor, and as a pandas DataFrame; a missing image is an error row."""
    pd = pytest.importorskip("pandas")
    from crnn_fast.integrations.ray import RayRecognizer

    udf = RayRecognizer(device="cpu", batch_size=4, num_threads=1)
    paths = sorted((HELDOUT / "clean_words").glob("*.png"))[:5]
    arrays = [np.asarray(Image.open(p).convert("L")) for p in paths]
    expected = [r.text for r in Recognizer.from_pretrained(device="cpu", batch_size=4).recognize(arrays)]

    ragged = np.empty(len(arrays) + 1, dtype=object)
    ragged[:-1] = arrays
    ragged[-1] = None
    ids = np.array([f"item{i}" for i in range(len(ragged))], dtype=object)
    out = udf({"image": ragged, "id": ids, "label": np.arange(len(ragged))})
    assert set(out) == {"id", "label", "text", "confidence", "error"}
    assert list(out["id"]) == list(ids) and list(out["label"]) == list(range(len(ragged)))
    assert list(out["text"][:-1]) == expected and all(e is None for e in out["error"][:-1])
    assert "no image" in out["error"][-1] and out["text"][-1] == "" and out["confidence"][-1] == 0.0

    same_shape = np.stack([np.asarray(Image.open(paths[0]).convert("L"))] * 3)  # (B, H, W)
    out = udf({"image": same_shape, "path": np.array(["a", "b", "c"], dtype=object)})
    assert len(set(out["text"])) == 1 and out["text"][0] == expected[0]

    frame = pd.DataFrame({"id": ["x", "y"], "bytes": [Path(paths[1]).read_bytes(), b"\x89PNG broken"]})
    out = udf(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["id", "text", "confidence", "error"]
    assert out["text"][0] == expected[1] and out["error"][0] is None and "cannot decode" in out["error"][1]


def test_class_names_missing_columns_and_bad_arguments():
    from crnn_fast.integrations.ray import RayRecognizer

    udf = RayRecognizer(device="cpu")
    with pytest.raises(KeyError, match="image_column"):
        udf({"pixels": np.zeros(1), "id": np.array(["a"])})
    with pytest.raises(KeyError, match="id_column"):
        udf({"bytes": np.array([b""], dtype=object)})
    with pytest.raises(TypeError, match="batch_format"):
        udf([b"png bytes"])
    with pytest.raises(ValueError, match="num_threads"):
        RayRecognizer(device="cpu", num_threads=0)
    out = RayRecognizer(device="cpu", image_column="png", id_column="__key__")(
        {"png": np.array([b""], dtype=object), "__key__": np.array(["k"], dtype=object)})
    assert list(out["__key__"]) == ["k"] and out["error"][0] == "image bytes are empty"


def _png_bytes(path) -> bytes:
    return Path(path).read_bytes()


def _write_shard(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory, heldout_paths, bad_files):
    """A folder (two images in a subfolder, a corrupt and an empty one, and a non-image file that folder
    expansion must skip), a WebDataset shard (png, jpg, a sample without an image, an empty png) and the same
    shard gzipped, outside the folder."""
    root = tmp_path_factory.mktemp("tiny")
    images = root / "images" / "sub"
    images.mkdir(parents=True)
    for i, path in enumerate(heldout_paths[:2]):
        (images / f"{i}.png").write_bytes(_png_bytes(path))
    for path in bad_files:
        (root / "images" / Path(path).name).write_bytes(Path(path).read_bytes())
    (root / "images" / "notes.txt").write_text("not an image, not read")
    jpg = io.BytesIO()
    Image.open(heldout_paths[60]).convert("RGB").save(jpg, format="JPEG", quality=95)
    shard = root / "shard-000000.tar"
    _write_shard(shard, {"w/000.png": _png_bytes(heldout_paths[120]), "w/000.txt": b"label",
                         "w/001.jpg": jpg.getvalue(), "w/002.txt": b"no image here", "w/003.png": b""})
    with open(shard, "rb") as src, gzip.open(root / "shard-000000.tar.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    expected = {str(images / "0.png"): heldout_paths[0], str(images / "1.png"): heldout_paths[1],
                "w/000": heldout_paths[120]}
    return root, shard, expected, jpg.getvalue()


def test_main_reads_folders_and_shards_and_writes_jsonl_and_parquet(ray_cluster, tiny_inputs, recognizer):
    import pyarrow.parquet as pq

    root, shard, expected, jpg = tiny_inputs
    # main() finds Ray initialised (the fixture's cluster) and uses it, leaving it running.
    jsonl = root / "out" / "results.jsonl"
    code = ray_integration.main([str(root / "images"), str(shard), "--output", str(jsonl), "--batch-size", "1",
                                 "--concurrency", "1", "--device", "cpu", "--no-progress"])
    assert code == ray_integration.EXIT_ITEM_ERRORS  # some rows have errors; the job still finished
    rows = {row["id"]: row for row in map(json.loads, jsonl.read_text().splitlines())}
    assert not jsonl.with_name("results.jsonl.partial").exists()
    images = root / "images"
    assert sorted(rows) == sorted([*expected, str(images / "corrupt.png"), str(images / "empty.png"),
                                   "w/001", "w/002", "w/003"])
    for row in rows.values():
        assert set(row) == {"id", "shard", "text", "confidence", "error"}
        assert row["shard"] == (str(shard) if row["id"].startswith("w/") else None)
    for row_id, source in expected.items():
        want = recognizer.recognize(source)
        assert rows[row_id]["text"] == want.text and rows[row_id]["error"] is None
        assert abs(rows[row_id]["confidence"] - want.confidence) < 1e-5
    assert rows["w/001"]["text"] == recognizer.recognize(jpg).text
    for bad, message in [(str(images / "corrupt.png"), "cannot decode"), (str(images / "empty.png"), "empty"),
                         ("w/002", "no image"), ("w/003", "empty")]:
        assert message in rows[bad]["error"]
        assert rows[bad]["text"] is None and rows[bad]["confidence"] is None

    parquet = root / "out" / "results.parquet"
    gzipped = root / "shard-000000.tar.gz"
    code = ray_integration.main([str(gzipped), "--output", str(parquet), "--batch-size", "1", "--device", "cpu",
                                 "--precision", "fp32", "--no-progress"])
    assert code == ray_integration.EXIT_ITEM_ERRORS
    table = pq.read_table(parquet)
    assert table.column_names == ["id", "shard", "text", "confidence", "error"]
    assert set(table.column("shard").to_pylist()) == {str(gzipped)}
    assert str(table.schema.field("confidence").type) == "double"
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert sorted(by_id) == ["w/000", "w/001", "w/002", "w/003"]
    for row_id in ("w/000", "w/001"):
        assert {k: by_id[row_id][k] for k in ("text", "error")} == {k: rows[row_id][k] for k in ("text", "error")}
    assert by_id["w/002"]["text"] is None and "no image" in by_id["w/002"]["error"]


def test_main_names_bad_arguments_before_starting(tmp_path, capsys, heldout_paths):
    pytest.importorskip("ray.data")
    out = str(tmp_path / "out.jsonl")
    cases = [
        ([str(tmp_path / "missing.png"), "--output", out], "no such file or folder"),
        ([str(tmp_path / "*.png"), "--output", out], "glob matches no file"),
        ([heldout_paths[0], "--output", str(tmp_path / "out.csv")], ".parquet or .jsonl"),
        ([heldout_paths[0], "--output", out, "--lexicon", str(tmp_path / "words.txt")], "lexicon"),
        ([heldout_paths[0], "--output", out, "--model", str(tmp_path / "nope.safetensors")], "nope"),
    ]
    for argv, message in cases:
        assert ray_integration.main(argv) == ray_integration.EXIT_USAGE, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "out.jsonl").exists()


def test_build_dataset_checks_device_and_beam(ray_cluster, heldout_paths):
    with pytest.raises(ValueError, match="num_gpus"):
        ray_integration.build_dataset(heldout_paths[:1], device="cuda")
    with pytest.raises(ValueError, match="beam"):
        ray_integration.build_dataset(heldout_paths[:1], beam=0)
    with pytest.raises(ValueError, match="concurrency"):
        ray_integration.build_dataset(heldout_paths[:1], concurrency=0)
    with pytest.raises(TypeError, match="unknown keys"):
        ray_integration.build_dataset(heldout_paths[:1], recognizer_options={"precission": "fp16"})
    with pytest.raises(ValueError, match="precision"):
        ray_integration.build_dataset(heldout_paths[:1], recognizer_options={"precision": "fp8"})
    with pytest.raises(ValueError, match="batch_size"):
        ray_integration.build_dataset(heldout_paths[:1], recognizer_options={"batch_size": 8})


def test_expand_inputs_walks_folders_and_globs(tiny_inputs):
    root, shard, _, _ = tiny_inputs
    found = ray_integration.expand_inputs([str(root), str(root / "images" / "**" / "*.png")])
    images = sorted(str(p) for p in (root / "images").rglob("*.png"))
    assert found.shards == [str(shard), str(root / "shard-000000.tar.gz")]
    assert sorted(found.files[:4]) == images and sorted(found.files[4:]) == images  # folder, then the glob
    with pytest.raises(TypeError, match="list"):
        ray_integration.expand_inputs(str(root))


def test_import_crnn_fast_does_not_import_ray_and_missing_ray_says_how_to_install():
    script = textwrap.dedent("""
        import sys
        import crnn_fast, crnn_fast.integrations.ray as integration
        assert "ray" not in sys.modules, "import crnn_fast must not import ray"
        sys.modules["ray"] = None  # as if Ray were not installed
        try:
            integration.import_ray()
        except ImportError as e:
            assert 'pip install "crnn_fast[ray]"' in str(e), e
        else:
            raise AssertionError("import_ray() must fail without ray")
        assert integration.main(["x.png", "--output", "o.jsonl"]) == integration.EXIT_USAGE
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert 'pip install "crnn_fast[ray]"' in result.stderr
