import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from crnn_fast.data import Charset, synth
from crnn_fast.formats.image_batch import pad_batch
from crnn_fast.models.crnn import CRNN, CRNNConfig
from crnn_fast.train import CheckpointError, TrainConfig, ctc_loss, export, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = dict(channels=(4, 8, 8, 8, 16, 16, 16), lstm_hidden=8)


def _need_fonts():
    if not synth.fonts_for_split("train"):
        pytest.skip("no usable fonts (install fonts-dejavu-core)")


def _config(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), **TINY, batch_size=4, steps=6, num_workers=0, val_size=8,
                val_every=3, ckpt_every=3, log_every=1, mix={"word": 1.0}, max_line_chars=12, progress=False,
                lr=3e-3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_overfits_a_fixed_tiny_batch():
    torch.manual_seed(0)
    charset = Charset("abc")
    gen = torch.Generator().manual_seed(0)
    # Three fixed "images": distinct vertical stripe patterns standing for three labels.
    arrays = []
    for k in range(3):
        img = torch.zeros(32, 48, dtype=torch.uint8)
        img[:, k * 8: k * 8 + 6] = 255
        img += torch.randint(0, 20, (32, 48), generator=gen, dtype=torch.uint8)
        arrays.append(img.numpy())
    batch = pad_batch(arrays, ["a", "bc", "cab"])
    model = CRNN(charset.num_classes, variant=CRNNConfig(channels=(8, 16, 16, 16, 32, 32, 32), lstm_hidden=16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = ctc_loss(model, batch, charset, torch.device("cpu"), amp=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_logs_checkpoints_and_exports(tmp_path):
    _need_fonts()
    config = _config(tmp_path)
    record = train(config)
    run = tmp_path / "run"
    assert (run / "last.pt").exists() and (run / "best.pt").exists() and (run / "config.json").exists()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == list(range(1, 7))
    assert any("val_exact" in x for x in lines) and "val_cer" in record
    weights, sidecar = export(str(run), str(tmp_path / "m"))
    meta = json.loads(sidecar.read_text())
    assert meta["config"]["lstm_hidden"] == 8 and len(meta["charset"]["characters"]) == 95
    assert meta["training"]["step"] in (3, 6)


def test_resume_continues_identically(tmp_path):
    _need_fonts()
    straight = _config(tmp_path / "a")
    train(straight)
    split = _config(tmp_path / "b")
    train(split, stop_after=3)
    assert torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)["step"] == 3
    train(split)  # resumes from step 3
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6, msg=k)


def test_amp_without_fast_bf16_warns_and_trains_in_fp32(tmp_path, monkeypatch):
    """On a CPU whose oneDNN has no bf16 kernels (AVX2 only), --amp is a slow-down: the run says so and trains
    exactly as the same run in fp32 does."""
    _need_fonts()
    import crnn_fast.train as train_module

    monkeypatch.setattr(train_module, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no fast bf16 kernels"):
        train(_config(tmp_path / "amp", amp=True, steps=4, val_every=0))
    train(_config(tmp_path / "fp32", amp=False, steps=4, val_every=0))
    a = torch.load(tmp_path / "amp" / "run" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "fp32" / "run" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_time_budget_stops(tmp_path):
    _need_fonts()
    record = train(_config(tmp_path, steps=10_000, time_budget_s=2.0, val_every=0))
    assert record["step"] < 10_000


def test_config_file_and_errors(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "variant": "small"}))
    assert TrainConfig.from_file(str(path), lr=0.5).lr == 0.5
    path.write_text(json.dumps({"stepz": 5}))
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig.from_file(str(path))
    with pytest.raises(ValueError, match="variant"):
        TrainConfig(variant="huge").model_config()


class _RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile_checkpoint(path, marker):
    # A real checkpoint's keys, so that only the payload differs from one train() writes.
    torch.save({"model": {"w": torch.zeros(1), "payload": _RunsCode(marker)}, "step": 3, "config": {}}, path)


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    """export, --init-from and resuming read checkpoints with weights_only=True: the payload never runs."""
    marker = tmp_path / "code_ran"
    run = tmp_path / "run"
    run.mkdir()
    _hostile_checkpoint(run / "best.pt", marker)
    with pytest.raises(CheckpointError, match="not a checkpoint that loads safely.*system"):
        export(str(run), str(tmp_path / "m"))
    with pytest.raises(CheckpointError, match="loads safely"):
        train(_config(tmp_path, init_from=str(run / "best.pt")))
    _hostile_checkpoint(run / "last.pt", marker)
    with pytest.raises(CheckpointError, match="loads safely"):
        train(_config(tmp_path))  # out_dir is run/: resumes from last.pt
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "crnn_fast.cli", "export", str(run), str(tmp_path / "m")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "loads safely" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()


def test_damaged_checkpoints_are_clear_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="no 'model'"):
        load_checkpoint(tmp_path / "list.pt")


def test_a_checkpoint_with_the_old_numpy_rng_state_still_resumes(tmp_path):
    """Checkpoints written before the RNG states were stored as plain types hold NumPy's legacy state tuple
    (an ndarray): the one non-plain type they need is allowed, and they resume."""
    _need_fonts()
    config = _config(tmp_path)
    train(config, stop_after=3)
    last = tmp_path / "run" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    np.random.seed(5)
    ckpt["rng"]["numpy"] = np.random.get_state()
    torch.save(ckpt, last)
    assert isinstance(load_checkpoint(last)["rng"]["numpy"][1], np.ndarray)
    record = train(config)
    assert record["step"] == 6
