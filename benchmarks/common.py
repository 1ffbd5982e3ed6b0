"""Helpers shared by the benchmark scripts: device and version facts, CUDA-event timing, the side-by-side table with
speedup columns, and the results JSON (write_results: the device and versions, then flat rows, one per measurement,
each an `impl` plus its shape keys and measures).

Import from a script in benchmarks/ with `from common import ...` (the script's folder is on sys.path).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"


def require_cuda(script: str) -> None:
    """Exit with a clear message when there is no CUDA GPU (the benchmarks time GPU kernels with CUDA events)."""
    import torch

    if not torch.cuda.is_available():
        sys.exit(f"{script} needs a CUDA GPU: torch.cuda.is_available() is False on this machine "
                 f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}). Run it on a GPU machine, "
                 "e.g. through benchmarks/gpu_session.sh.")


def device_name() -> str:
    """torch.cuda.get_device_name(), or the CPU model without a GPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return cpu_name()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (for benchmarks that run on the CPU even where there is a GPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def slug(text: str) -> str:
    """A file-name-safe lowercase slug: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def git_commit() -> str:
    """The commit the benchmarked tree is at: $CRNN_FAST_COMMIT if set (a machine that got only the working tree),
    else `git rev-parse HEAD` (with "-dirty" for uncommitted changes), else "unknown"."""
    if os.environ.get("CRNN_FAST_COMMIT"):
        return os.environ["CRNN_FAST_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    """torch, triton, CUDA and Python versions (None for what is not installed)."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda,
            "python": platform.python_version()}


def bench_ms(fn: Callable[[], object], warmup_ms: float = 25, rep_ms: float = 100) -> float:
    """Median milliseconds per call of fn, timed with CUDA events (triton.testing.do_bench; it flushes L2
    between calls)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def results_path(benchmark: str, device: str, out_dir: str | os.PathLike | None = None) -> Path:
    """<out_dir or $BENCH_RESULTS_DIR or benchmarks/results>/<benchmark>-<device-slug>-<date>.json"""
    folder = Path(out_dir or os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"{benchmark}-{slug(device)}-{stamp}.json"


def write_results(path: Path, benchmark: str, rows: Sequence[dict], **extra) -> Path:
    """Write the results JSON: benchmark, device, versions, commit, extra keys, and the flat rows. Call it again
    with more rows to rewrite the file (a run cut short still leaves what it measured)."""
    import torch

    v = versions()
    document = {"benchmark": benchmark, "device": device_name(), "torch": v["torch"], "triton": v["triton"],
                "cuda": v["cuda"], "python": v["python"], "commit": git_commit(),
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "gpu_count": torch.cuda.device_count(), **extra, "rows": list(rows)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    tmp.replace(path)
    return path


def speedup_table(rows: Iterable[dict], shape_keys: Sequence[str], impls: Sequence[str], baseline: str,
                  value: str = "median_ms") -> str:
    """Rows sharing every key in shape_keys are compared: one line per shape, a column per impl (ms) and a
    speedup column (baseline time / impl time, > 1 is faster) per impl other than the baseline."""
    rows = list(rows)
    groups: dict = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in shape_keys), {})[row["impl"]] = row.get(value)
    present = [i for i in impls if any(i in g for g in groups.values())]
    others = [i for i in present if i != baseline]
    header = list(shape_keys) + [f"{i} ms" for i in present] + [f"x vs {baseline}: {i}" for i in others]
    lines = []
    for key, times in groups.items():
        base = times.get(baseline)
        cells = [str(k) for k in key]
        cells += ["-" if times.get(i) is None else f"{times[i]:.4g}" for i in present]
        cells += ["-" if not base or not times.get(i) else f"{base / times[i]:.2f}x" for i in others]
        lines.append(cells)
    widths = [max(len(h), *(len(line[c]) for line in lines)) if lines else len(h) for c, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)
