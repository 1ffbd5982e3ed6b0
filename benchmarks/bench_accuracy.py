"""Accuracy and CPU cost of crnn_fast vs Tesseract 5 (--psm 7) vs RapidOCR (PP-OCRv4 rec only), side by side.

The data: benchmarks/heldout/<subset>/labels.tsv (rendered by `crnn-fast render` with fonts and words that
training never sees). Every system gets the same PNG files at their rendered resolution and resizes
them its own way; every prediction is compared after stripping and collapsing whitespace.

    python benchmarks/bench_accuracy.py [--data benchmarks/heldout] [--systems crnn_fast,tesseract,rapidocr]

Metrics per subset: exact match, alnum accuracy (CRNN paper: lower-case, [0-9a-z] only), CER, and
CPU ms/image (process CPU time, all threads, for in-process systems; child CPU time for tesseract) plus
wall ms/image. crnn_fast and RapidOCR recognise a subset as one batched call; Tesseract runs once per
image (`tesseract IMG stdout --psm 7`), its documented single-line mode.
Writes benchmarks/results/bench_accuracy-<device>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))


# Typographic characters peers may print for their ASCII counterparts (the labels are ASCII): mapped for
# every system alike, so no one loses a match to a curly quote. NFKC also folds full-width forms and ligatures.
_ASCII_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                             "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u2013": "-",
                             "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u00a0": " ",
                             "\u2026": "...", "\u00b4": "'", "\u3002": "."})


def norm(text: str) -> str:
    """Strip, collapse whitespace, NFKC-fold and map typographic punctuation to ASCII."""
    text = unicodedata.normalize("NFKC", text).translate(_ASCII_FOLD)
    return " ".join(text.split())


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def run_crnn_fast(paths, args):
    import torch

    from crnn_fast.recognize import Recognizer

    torch.set_num_threads(args.threads)
    rec = Recognizer.from_pretrained(args.model, device="cpu", batch_size=args.batch_size)
    rec.recognize(paths[: min(8, len(paths))])  # warm-up (allocator, first-call dispatch)
    c0, t0 = time.process_time(), time.perf_counter()
    results = rec.recognize(paths, batch_size=args.batch_size)
    c1, t1 = time.process_time(), time.perf_counter()
    return [r.text for r in results], c1 - c0, t1 - t0


def run_tesseract(paths, args):
    env = dict(os.environ, OMP_THREAD_LIMIT=str(args.threads))
    preds = []
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    for p in paths:
        out = subprocess.run(["tesseract", str(p), "stdout", "--psm", "7", "-l", "eng"], capture_output=True,
                             env=env, text=True)
        preds.append(out.stdout.replace("\f", ""))
    r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return preds, cpu, t1 - t0


_RAPID = None


def run_rapidocr(paths, args):
    global _RAPID
    import cv2
    from rapidocr_onnxruntime import RapidOCR

    if _RAPID is None:
        _RAPID = RapidOCR(intra_op_num_threads=args.threads, inter_op_num_threads=1)
    engine = _RAPID
    engine.text_rec([cv2.imread(str(p)) for p in paths[:6]])  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    images = [cv2.imread(str(p)) for p in paths]
    res, _ = engine.text_rec(images)
    c1, t1 = time.process_time(), time.perf_counter()
    return [r[0] for r in res], c1 - c0, t1 - t0


SYSTEMS = {"crnn_fast": run_crnn_fast, "tesseract": run_tesseract, "rapidocr": run_rapidocr}
LABELS = {"crnn_fast": "crnn_fast", "tesseract": "Tesseract 5 --psm 7", "rapidocr": "RapidOCR PP-OCRv4 rec"}


def versions() -> dict:
    v = {"python": platform.python_version()}
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        v["tesseract"] = (out.stdout or out.stderr).split("\n")[0]
    except OSError:
        pass
    try:
        import importlib.metadata as md

        v["rapidocr_onnxruntime"] = md.version("rapidocr_onnxruntime")
        v["onnxruntime"] = md.version("onnxruntime")
    except Exception:
        pass
    return v


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "heldout"))
    parser.add_argument("--systems", default="crnn_fast,tesseract,rapidocr")
    parser.add_argument("--model", default=None, help="crnn_fast weights (default: the shipped model)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads each system may use")
    parser.add_argument("--limit", type=int, default=None, help="images per subset (default: all)")
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args()

    from crnn_fast.data.datasets import FolderDataset
    from crnn_fast.evaluate import compute_metrics

    data = Path(args.data)
    subsets = sorted(p.name for p in data.iterdir() if (p / "labels.tsv").exists())
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}; choose from {list(SYSTEMS)}")
    rows = []
    for subset in subsets:
        ds = FolderDataset(data / subset)
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        paths = [ds.path(i) for i in range(n)]
        labels = [ds.label(i) for i in range(n)]
        for system in systems:
            try:
                preds, cpu_s, wall_s = SYSTEMS[system](paths, args)
            except Exception as e:  # a missing peer is reported, not fatal
                print(f"{system} on {subset}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            m = compute_metrics([norm(p) for p in preds], [norm(t) for t in labels])
            rows.append({"impl": system, "subset": subset, "n": n, "exact": m.exact, "alnum": m.alnum,
                         "cer": m.cer, "edits": m.edits, "chars": m.chars, "cpu_ms_per_image": 1000 * cpu_s / n,
                         "wall_ms_per_image": 1000 * wall_s / n,
                         "threads": args.threads, "batch_size": args.batch_size if system != "tesseract" else 1})

    # Table: one line per (subset, system), speed relative to Tesseract on the same subset.
    header = (f"{'subset':<16} {'system':<22} {'n':>4} {'exact':>7} {'alnum':>7} {'CER':>7} "
              f"{'CPU ms/img':>10} {'wall ms/img':>11} {'CPU speedup vs tess':>19}")
    print(header)
    print("-" * len(header))
    for subset in subsets + ["ALL"]:
        for system in systems:
            if subset == "ALL":
                sel = [r for r in rows if r["impl"] == system]
                if not sel:
                    continue
                n = sum(r["n"] for r in sel)
                agg = {k: sum(r[k] * r["n"] for r in sel) / n for k in ("exact", "alnum", "cpu_ms_per_image",
                                                                       "wall_ms_per_image")}
                agg["cer"] = sum(r["edits"] for r in sel) / max(1, sum(r["chars"] for r in sel))
                r = {"impl": system, "subset": "ALL", "n": n, **agg}
            else:
                r = next((x for x in rows if x["impl"] == system and x["subset"] == subset), None)
                if r is None:
                    continue
            tess = None
            if subset != "ALL":
                tess = next((x for x in rows if x["impl"] == "tesseract" and x["subset"] == subset), None)
            else:
                sel = [x for x in rows if x["impl"] == "tesseract"]
                if sel:
                    total = sum(x["n"] for x in sel)
                    tess = {"cpu_ms_per_image": sum(x["cpu_ms_per_image"] * x["n"] for x in sel) / total}
            speed = "-"
            if tess and r["cpu_ms_per_image"] > 0:
                speed = f"{tess['cpu_ms_per_image'] / r['cpu_ms_per_image']:.1f}x"
            cer = f"{r['cer']:.4f}" if r.get("cer") is not None else "   -   "
            print(f"{subset:<16} {LABELS[system]:<22} {r['n']:>4} {r['exact']:>7.3f} {r['alnum']:>7.3f} {cer:>7} "
                  f"{r['cpu_ms_per_image']:>10.2f} {r['wall_ms_per_image']:>11.2f} {speed:>19}")
        print()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = cpu_model().lower().replace(" ", "-").replace("(r)", "").replace("(tm)", "")[:40]
    date = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    payload = {"benchmark": "accuracy", "device": cpu_model(), "cpu_count": os.cpu_count(), "commit": commit,
               "data": str(data), "versions": versions(), "threads": args.threads, "rows": rows}
    path = out / f"bench_accuracy-{slug}-{date}.json"
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
