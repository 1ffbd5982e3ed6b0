"""Data-parallel training under torchrun (2 CPU processes, gloo) against one process with the same global
batch: the same loss at every step and the same weights, also across a resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from crnn_fast.data.datasets import write_folder
from crnn_fast.train import TrainConfig, export, train

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this PyTorch build")

STEPS = 20
LR = 3e-3
LETTERS = "abcdefghij"


def _write_dataset(root):
    """40 images whose widths vary inside every batch, so that each process's shard is narrower than the
    global batch it belongs to (the shards must still be padded to the global width)."""
    rng = np.random.default_rng(0)
    items = []
    for _ in range(40):
        text = "".join(rng.choice(list(LETTERS), int(rng.integers(1, 5))))
        image = rng.integers(150, 256, (32, 16 * len(text) + int(rng.integers(0, 24))), dtype=np.uint8)
        for k, c in enumerate(text):  # a dark bar per character, whose height says which letter
            image[4: 6 + 2 * LETTERS.index(c), 16 * k + 4: 16 * k + 10] = 20
        items.append((image, text))
    return write_folder(root, items)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The dataset, a config file, and the single-process run to compare with."""
    root = tmp_path_factory.mktemp("ddp")
    config = dict(out_dir=str(root / "single"), channels=[4, 8, 8, 8, 16, 16, 16], lstm_hidden=8,
                  charset="alphanumeric_lower", batch_size=8, steps=STEPS, lr=LR, num_workers=0, val_every=0,
                  ckpt_every=10, log_every=1, progress=False, threads=1, train_data=str(_write_dataset(root / "data")))
    config_file = root / "config.json"
    config_file.write_text(json.dumps(config))
    threads = torch.get_num_threads()
    try:
        train(TrainConfig.from_file(str(config_file)))
    finally:
        torch.set_num_threads(threads)
    return root, config_file


def _torchrun(*args, cwd):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def _losses(run_dir) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines]
    assert steps == list(range(1, STEPS + 1)), f"one line per step, written by rank 0 alone: {steps}"
    return {x["step"]: x["loss"] for x in lines}


def _assert_same_run(run_dir, single_dir):
    losses, single_losses = _losses(run_dir), _losses(single_dir)
    worst = max(abs(losses[s] - single_losses[s]) for s in losses)
    assert worst <= 1e-4, f"loss differs by up to {worst:.2e}: {losses} vs {single_losses}"
    ckpt = torch.load(run_dir / "last.pt", weights_only=False)
    single = torch.load(single_dir / "last.pt", weights_only=False)
    assert ckpt["step"] == single["step"] == STEPS and ckpt["world_size"] == 2
    assert list(ckpt["model"]) == list(single["model"]), "the checkpoint's keys are the plain CRNN's"
    # A conv followed by batch norm gets zero gradient for its bias (the norm removes any shift), so what the
    # two runs feed AdamW there is rounding noise, which AdamW turns into steps of up to about lr. Those
    # biases, and the running means that follow them, agree within lr per step only.
    normed = [key.split(".")[1][len("batchnorm"):] for key in single["model"] if key.endswith("running_mean")]
    loose = {f"cnn.conv{i}.bias" for i in normed} | {f"cnn.batchnorm{i}.running_mean" for i in normed}
    for key, value in single["model"].items():
        tol = dict(rtol=0, atol=LR * STEPS) if key in loose else dict(rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ckpt["model"][key], value, **tol, msg=key)


def test_two_processes_train_as_one(setup, tmp_path):
    root, config_file = setup
    run_dir = tmp_path / "run"
    _torchrun("-m", "crnn_fast.cli", "train", "--config", config_file, "--out-dir", run_dir, "--no-progress",
              cwd=tmp_path)
    _assert_same_run(run_dir, root / "single")
    assert json.loads((run_dir / "config.json").read_text())["batch_size"] == 8
    # export() loads the checkpoint into a plain CRNN, strictly: no `module.` prefix from the DDP wrapper.
    weights, _sidecar = export(str(run_dir), str(tmp_path / "model"), checkpoint="last.pt")
    assert weights.exists()


def test_two_processes_resume(setup, tmp_path):
    root, config_file = setup
    run_dir = tmp_path / "run"
    script = tmp_path / "train_part.py"
    script.write_text("import sys\nfrom crnn_fast.train import TrainConfig, train\n"
                      "train(TrainConfig.from_file(sys.argv[1], out_dir=sys.argv[2]), stop_after=int(sys.argv[3]))\n")
    _torchrun(script, config_file, run_dir, STEPS // 2, cwd=tmp_path)
    assert torch.load(run_dir / "last.pt", weights_only=False)["step"] == STEPS // 2
    _torchrun("-m", "crnn_fast.cli", "train", "--config", config_file, "--out-dir", run_dir, "--no-progress",
              cwd=tmp_path)  # resumes from last.pt
    _assert_same_run(run_dir, root / "single")
