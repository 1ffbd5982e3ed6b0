import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from crnn_fast.cli import iter_inputs
from crnn_fast.data import Charset
from crnn_fast.data.datasets import write_folder
from crnn_fast.models.crnn import CRNN, CRNNConfig
from crnn_fast.models.pretrained import save_pretrained


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    charset = Charset.printable_ascii()
    torch.manual_seed(0)
    weights, _ = save_pretrained(CRNN(charset.num_classes, variant=CRNNConfig(channels=(4, 8, 8, 8, 16, 16, 16),
                                                                          lstm_hidden=8)), charset, root / "tiny")
    from crnn_fast.data import synth

    fonts = synth.fonts_for_split("train")
    import random

    rng = random.Random(0)
    images = []
    for word in ("hello", "world"):
        if fonts:
            arr, _ = synth.render_text(word, fonts[0], rng, synth.RenderConfig(), degraded=False, native=True)
        else:
            arr = np.full((30, 90), 255, np.uint8)
        images.append((arr, word))
    write_folder(root / "imgs", images)
    (root / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root, weights


def _run(*args, timeout=120, **env):
    env = dict(os.environ, OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "crnn_fast.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_recognize_files(setup):
    root, weights = setup
    out = _run("recognize", root / "imgs" / "000000.png", root / "imgs" / "000001.png", "--model", weights,
               "--device", "cpu")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().split("\n")
    assert len(lines) == 2
    for line, name in zip(lines, ("000000.png", "000001.png")):
        path, text, conf = line.split("\t")
        assert path.endswith(name) and 0.0 <= float(conf) <= 1.0


def test_recognize_bad_file_exits_1_and_reads_the_rest(setup):
    root, weights = setup
    out = _run("recognize", root / "imgs", root / "nope.png", "--model", weights, "--json")
    assert out.returncode == 1
    rows = [json.loads(x) for x in out.stdout.strip().split("\n")]
    by_name = {os.path.basename(r["path"]): r for r in rows}
    assert by_name["000000.png"]["error"] is None and by_name["000001.png"]["error"] is None
    assert by_name["broken.png"]["error"] and by_name["nope.png"]["error"]
    assert "broken.png" in out.stderr and "2 of 4 images failed" in out.stderr


def test_wrong_model_is_a_clear_error(setup, tmp_path):
    root, _ = setup
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    out = _run("recognize", root / "imgs" / "000000.png", "--model", bad)
    assert out.returncode == 2 and "cannot load model" in out.stderr and "Traceback" not in out.stderr


def test_eval_folder(setup):
    root, weights = setup
    (root / "evalset").mkdir(exist_ok=True)
    write_folder(root / "evalset", [(np.full((30, 60), 255, np.uint8), "a"), (np.zeros((30, 60), np.uint8), "b")])
    out = _run("eval", root / "evalset", "--model", weights, "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "exact=" in out.stdout and "cer=" in out.stdout


@pytest.mark.parametrize("command", ["recognize", "eval"])
def test_bad_lexicon_is_one_clear_error(setup, tmp_path, command):
    root, weights = setup
    bad = tmp_path / "lexicon.txt"
    bad.write_text("hello\nna\u00efve\n", encoding="utf-8")
    for lexicon, message in ((tmp_path / "missing.txt", "no such file"), (bad, "outside the charset")):
        out = _run(command, root / "imgs", "--model", weights, "--lexicon", lexicon, "--no-progress")
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr


def test_iter_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "c.txt", "sub/f.png"):
        (tmp_path / "d" / name).write_bytes(b"")
    Image.new("L", (4, 4)).save(tmp_path / "e.png")
    inputs = [str(tmp_path / "d"), str(tmp_path / "*.png"), str(tmp_path / "zz*.png"), "missing.png"]
    found = [name for name, _ in iter_inputs(inputs)]
    assert [os.path.relpath(p, tmp_path) if p.startswith(str(tmp_path)) else p for p in found] == [
        "d/a.png", "d/b.jpg", "d/sub/f.png", "e.png", "zz*.png", "missing.png"]


def test_iter_inputs_reads_tar_shards(tmp_path):
    import io
    import tarfile

    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("0001.png", b"png-bytes"), ("0001.txt", b"label"), ("0002.jpg", b"jpg-bytes")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    found = list(iter_inputs([str(shard)]))
    assert found == [(f"{shard}:0001.png", b"png-bytes"), (f"{shard}:0002.jpg", b"jpg-bytes")]


def test_recognize_streams_a_tar_shard(setup, tmp_path):
    import tarfile

    root, weights = setup
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(root / "imgs" / "000000.png", arcname="a/000000.png")
        tar.add(root / "imgs" / "broken.png", arcname="a/broken.png")
        tar.add(root / "imgs" / "000001.png", arcname="a/000001.png")
    out = _run("recognize", shard, "--model", weights, "--device", "cpu", "--json", "--workers", "2")
    assert out.returncode == 1, out.stderr
    rows = [json.loads(x) for x in out.stdout.strip().split("\n")]
    assert [r["path"] for r in rows] == [f"{shard}:a/000000.png", f"{shard}:a/broken.png", f"{shard}:a/000001.png"]
    assert rows[0]["error"] is None and rows[1]["error"] and rows[2]["error"] is None
    assert "3 images in" in out.stderr and "images/s" in out.stderr and "1 of 3 images failed" in out.stderr


def test_recognize_ray_routes_to_the_ray_integration():
    pytest.importorskip("ray")
    out = _run("recognize", "--ray", "--help")
    assert out.returncode == 0 and "crnn-fast recognize --ray" in out.stdout and "--output" in out.stdout


def test_a_corrupt_tar_shard_is_a_clear_error(setup, tmp_path):
    root, weights = setup
    shard = tmp_path / "bad.tar"
    shard.write_bytes(b"this is not a tar archive at all" * 40)
    out = _run("recognize", shard, "--model", weights, "--device", "cpu")
    assert out.returncode == 1 and "not a readable tar shard" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("beam", ["0", "16777216", "x"])
def test_beam_is_checked_when_the_arguments_are_parsed(beam, capsys):
    # Before: --beam 0 decoded greedily, --beam 16777216 took ten minutes an image.
    from crnn_fast.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["recognize", "img.png", "--beam", beam])
    assert "--beam must be" in capsys.readouterr().err
    assert build_parser().parse_args(["recognize", "img.png", "--beam", "4096"]).beam == 4096


def _good_images(folder, setup, names):
    import shutil

    root, _ = setup
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        shutil.copy(root / "imgs" / f"00000{i % 2}.png", os.path.join(os.fsencode(folder), os.fsencode(name)))


def test_a_fifo_named_like_an_image_is_its_own_error(setup, tmp_path):
    root, weights = setup
    _good_images(tmp_path / "d", setup, ["a.png", "c.png"])
    os.mkfifo(tmp_path / "d" / "b.png")  # nobody writes to it: reading it would block for ever
    out = _run("recognize", tmp_path / "d", tmp_path / "d" / "b.png", "--model", weights, "--device", "cpu",
               timeout=60)
    assert out.returncode == 1, out.stderr
    assert [os.path.basename(line.split("\t")[0]) for line in out.stdout.splitlines()] == ["a.png", "c.png"]
    assert out.stderr.count("b.png': is a FIFO; only regular files are read") == 2, out.stderr


def test_a_bad_tar_is_one_bad_input(setup, tmp_path):
    import tarfile

    root, weights = setup
    _good_images(tmp_path, setup, ["first.png", "last.png"])
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive at all" * 40)
    with tarfile.open(tmp_path / "whole.tar", "w") as tar:
        tar.add(root / "imgs" / "000000.png", arcname="m0.png")
        tar.add(root / "imgs" / "000001.png", arcname="m1.png")
    with tarfile.open(tmp_path / "whole.tar") as tar:
        m1 = tar.getmember("m1.png")
    data = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: m1.offset_data + m1.size // 2])  # m0 whole, m1 cut
    os.mkfifo(tmp_path / "fifo.tar")
    inputs = [tmp_path / n for n in ("first.png", "junk.tar", "cut.tar", "fifo.tar", "last.png")]
    out = _run("recognize", *inputs, "--model", weights, "--device", "cpu", "--json", timeout=60)
    assert out.returncode == 1, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    names = [os.path.basename(r["path"]) for r in rows]
    assert names == ["first.png", "junk.tar", "cut.tar:m0.png", "cut.tar", "fifo.tar", "last.png"], names
    assert [r["error"] is None for r in rows] == [True, False, True, False, False, True]
    assert "not a readable tar shard" in rows[1]["error"] and "FIFO" in rows[4]["error"]
    assert "3 of 6 images failed" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("device", ["bogus", "meta", "cuda:x", "mps"])
def test_a_bad_device_is_one_clear_error(setup, device):
    root, weights = setup
    out = _run("recognize", root / "imgs" / "000000.png", "--model", weights, "--device", device)
    assert out.returncode == 2 and "device must be" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_file_names_cannot_break_or_forge_the_output(setup, tmp_path):
    """A name that is not UTF-8 is printed escaped (a strict UTF-8 stdout cannot stop the run), and tabs and
    newlines in names are escaped, so that every image is one row of three fields."""
    root, weights = setup
    names = [b"caf\xe9.png", "tab\there.png", "new\nline.png", "back\\slash.png", "z.png"]
    _good_images(tmp_path / "d", setup, names)
    out = _run("recognize", tmp_path / "d", "--model", weights, "--device", "cpu",
               PYTHONIOENCODING="utf-8:strict")
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert all(len(r) == 3 for r in rows) and len(rows) == len(names), rows
    assert sorted(os.path.basename(r[0]) for r in rows) == sorted(
        ["caf\\xe9.png", "tab\\there.png", "new\\nline.png", "back\\\\slash.png", "z.png"])
    json_out = _run("recognize", tmp_path / "d", "--model", weights, "--device", "cpu", "--json",
                    PYTHONIOENCODING="utf-8:strict")
    assert json_out.returncode == 0, json_out.stderr
    paths = {os.path.basename(json.loads(line)["path"]) for line in json_out.stdout.splitlines()}
    assert paths == {"caf\udce9.png", "tab\there.png", "new\nline.png", "back\\slash.png", "z.png"}


# -- hostile folders (hypothesis) ------------------------------------------------------------------------------

def _hostile_file(kind: str, path: str, good_png: bytes) -> bool:
    """Write one file of `kind` at `path`; returns whether `crnn-fast recognize` should read it."""
    import struct
    import zlib

    def png_header(width, height):
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", 1 << 20) + b"IDATxx")

    if kind == "fifo":
        os.mkfifo(path)
        return False
    if kind == "dangling link":
        os.symlink(path + ".gone", path)
        return False
    data = {"good": good_png, "zero bytes": b"", "truncated": good_png[: len(good_png) // 2],
            "text": b"this is not an image\n" * 10, "too wide header": png_header(300_000, 40),
            "bomb header": png_header(40_000, 40_000)}[kind]
    with open(path, "wb") as f:
        f.write(data)
    return kind == "good"


HOSTILE_KINDS = ["good", "zero bytes", "truncated", "text", "too wide header", "bomb header", "fifo", "dangling link"]


def test_hostile_folders_are_read_to_the_end(setup):
    """Folders of random good and bad files (zero-byte, truncated, not images, a PNG under another image
    extension, FIFOs, headers claiming huge sizes, dangling links, odd permission bits): recognize finishes,
    prints every good image and reports every bad one, each once."""
    pytest.importorskip("hypothesis")
    import contextlib
    import io
    import shutil
    import signal
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from crnn_fast.cli import main

    root, weights = setup
    good_png = (root / "imgs" / "000000.png").read_bytes()
    entry = st.tuples(st.sampled_from(HOSTILE_KINDS), st.sampled_from([".png", ".jpg", ".PNG", ".tif", ".txt"]),
                      st.sampled_from([0o644, 0o000, 0o4755, 0o200, 0o1777]), st.booleans())

    class Blocked(BaseException):  # the Recognizer turns any Exception while loading into that item's error
        pass

    def expired(signum, frame):
        raise Blocked("crnn-fast recognize did not finish")

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(entry, min_size=1, max_size=8))
    def check(entries):
        folder = tempfile.mkdtemp(prefix="hostile")
        try:
            expected = {}  # path -> readable
            for i, (kind, ext, mode, nested) in enumerate(entries):
                sub = os.path.join(folder, "sub") if nested else folder
                os.makedirs(sub, exist_ok=True)
                path = os.path.join(sub, f"f{i}{ext}")
                readable = _hostile_file(kind, path, good_png)
                if kind not in ("fifo", "dangling link"):
                    os.chmod(path, mode)
                    readable = readable and os.access(path, os.R_OK)
                if ext != ".txt":  # folders are searched for image extensions only
                    expected[path] = readable
            out = io.StringIO()
            previous = signal.signal(signal.SIGALRM, expired)
            signal.alarm(20)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                    code = main(["recognize", folder, "--model", str(weights), "--device", "cpu", "--json",
                                 "--no-progress", "-q"])
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, previous)
            rows = [json.loads(line) for line in out.getvalue().splitlines()]
            got = {r["path"]: r["error"] is None for r in rows}
            assert len(rows) == len(got), "an input was reported twice"
            assert got == expected
            assert code == (0 if all(expected.values()) and expected else 1 if expected else 2)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # removing needs the folder's permission, not the files'


    check()


def test_greedy_and_no_lm_flags(setup):
    root, weights = setup
    image = root / "imgs" / "000000.png"
    for flags in (["--greedy"], ["--no-lm"], ["--no-lm", "--beam", "4"]):
        out = _run("recognize", image, "--model", weights, "--device", "cpu", *flags)
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, (flags, out.stderr)
    out = _run("recognize", image, "--model", weights, "--device", "cpu", "--greedy", "--beam", "4")
    assert out.returncode == 2 and "greedy" in out.stderr and "Traceback" not in out.stderr, out.stderr
