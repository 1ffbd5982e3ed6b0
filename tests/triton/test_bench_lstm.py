"""benchmarks/bench_lstm.py without a GPU: its arguments, its refusal to time without CUDA, and (hidden
--cpu-smoke flag, Triton interpreter) that a run produces the table and the JSON format of benchmarks/common.py
(write_results)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_lstm.py"


def _run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def test_help():
    proc = _run("--help")
    assert proc.returncode == 0
    assert "--batch" in proc.stdout and "--tune" in proc.stdout and "torch.nn.LSTM" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_without_gpu_says_it_needs_one():
    proc = _run("--batch", "8")
    assert proc.returncode != 0
    assert "needs a CUDA GPU" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run is for machines without a GPU")
def test_cpu_smoke_writes_results_json(tmp_path):
    pytest.importorskip("triton")
    proc = _run("--cpu-smoke", "--batch", "2", "--time", "2", "--input-size", "4", "--hidden", "8", "--layers", "1",
                "--dtypes", "float32", "--impls", "torch", "triton", "--out", str(tmp_path),
                env={"TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x vs torch.nn.LSTM" in proc.stdout
    (path,) = tmp_path.glob("lstm-*.json")
    doc = json.loads(path.read_text())
    for key in ("benchmark", "device", "torch", "triton", "cuda", "commit", "rows"):
        assert key in doc
    assert doc["benchmark"] == "lstm"
    impls = {row["impl"] for row in doc["rows"]}
    assert impls == {"torch.nn.LSTM", "crnn_fast triton"}
    for row in doc["rows"]:
        assert {"pass", "dtype", "B", "T", "I", "H", "layers", "bidirectional", "median_ms"} <= set(row)
    errors = [row["max_abs_err"] for row in doc["rows"] if row["pass"] == "fwd"]
    assert errors and max(errors) < 1e-4
