"""PyTorch vs onnxruntime on the CPU: the same network (the shipped model, or --model) exported with
crnn_fast.export_onnx, the same held-out images, the same Recognizer pipeline, the same thread count, one run.

    python benchmarks/bench_onnx.py [--data benchmarks/heldout] [--threads 1] [--repeats 5] [--no-half]

Two passes per runtime, alternated repeat by repeat so that both see the same machine load:
  recognize  Recognizer.recognize over all images (read + resize + pad + network + greedy decode), wall time
  network    the network alone on the Recognizer's batches (preprocessed once, padded as Recognizer pads them)
Reported: median over repeats of the pass's wall time (median_ms), wall ms per image, images/s and process CPU
ms per image (median; on a shared machine it moves less than wall time); and per ONNX runtime, agreement with
PyTorch over all images: the share of identical texts, the largest confidence difference, and the largest
log-prob difference over the valid frames of the network pass.
Writes benchmarks/results/bench_onnx-<cpu>-<date>.json (benchmarks/common.py write_results).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import cpu_name, results_path, speedup_table, write_results  # noqa: E402


def heldout_paths(data: Path, limit: int | None) -> list[Path]:
    paths = []
    for labels in sorted(data.glob("*/labels.tsv")):
        names = [line.split("\t", 1)[0] for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]
        paths += [labels.parent / n for n in names[:limit]]
    return paths


def network_batches(recognizer, paths, batch_size: int):
    """The Recognizer's own batches: loaded, sorted by width, cut and padded (guard columns included) as it does."""
    loaded = [recognizer._load(i, p) for i, p in enumerate(paths)]
    bad = [r.error for r in loaded if not hasattr(r, "pixels")]
    if bad:
        raise SystemExit(f"{len(bad)} images could not be read, e.g. {bad[0]}")
    loaded.sort(key=lambda p: p.width)
    return [recognizer._model_input(loaded[i: i + batch_size]) for i in range(0, len(loaded), batch_size)]


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE / "heldout"), help="folders with labels.tsv (default: held-out)")
    parser.add_argument("--model", default=None, help="shipped model name or .safetensors path (default: shipped)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per pass (the median is reported)")
    parser.add_argument("--limit", type=int, default=None, help="images per subset (default: all)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-half", action="store_true", help="skip the fp16 ONNX export")
    parser.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    for name in ("threads", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    import onnxruntime
    import torch

    from crnn_fast.models.onnx import export_onnx
    from crnn_fast.models.pretrained import load_pretrained
    from crnn_fast.recognize import Recognizer

    torch.set_num_threads(args.threads)
    paths = heldout_paths(Path(args.data), args.limit)
    if not paths:
        parser.error(f"no labels.tsv folders under {args.data}")
    n = len(paths)
    model, charset, meta = load_pretrained(args.model)
    recognizers = {"pytorch": Recognizer(model, charset, device="cpu", batch_size=args.batch_size, meta=meta)}
    tmp = tempfile.TemporaryDirectory()
    variants = [("onnxruntime", False)] + ([] if args.no_half else [("onnxruntime-fp16", True)])
    for impl, half in variants:
        onnx_path, _ = export_onnx(model, Path(tmp.name) / f"{impl}.onnx", charset=charset, opset=args.opset,
                                   half=half)
        # load_onnx gives onnxruntime torch's thread count (set above): the same CPU share for both runtimes.
        recognizers[impl] = Recognizer.from_pretrained(onnx_path, device="cpu", batch_size=args.batch_size)
    impls = list(recognizers)

    batches = network_batches(recognizers["pytorch"], paths, args.batch_size)
    shape = {"n": n, "threads": args.threads, "batch_size": args.batch_size, "batches": len(batches),
             "max_width": max(int(images.shape[-1]) for images, _ in batches)}

    def run_network(rec):
        with torch.inference_mode():
            return [rec._network(images, widths) for images, widths in batches]

    for rec in recognizers.values():  # warm-up: allocator, first-call dispatch, onnxruntime's arena
        rec.recognize(paths[:16])
        run_network(rec)
    times = {(impl, p): [] for impl in impls for p in ("recognize", "network")}
    outputs = {}
    load0 = os.getloadavg()
    for _ in range(args.repeats):
        for impl, rec in recognizers.items():
            outputs[impl, "recognize"], wall, cpu = timed(lambda rec=rec: rec.recognize(paths))
            times[impl, "recognize"].append((wall, cpu))
            outputs[impl, "network"], wall, cpu = timed(lambda rec=rec: run_network(rec))
            times[impl, "network"].append((wall, cpu))
    load1 = os.getloadavg()

    reference_texts = outputs["pytorch", "recognize"]
    frames = [recognizers["pytorch"].model.output_lengths(widths) for _, widths in batches]
    rows = []
    for (impl, p), samples in times.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        row = {"impl": impl, "pass": p, **shape, "median_ms": 1000 * wall, "ms_per_image": 1000 * wall / n,
               "images_per_s": n / wall, "cpu_ms_per_image": 1000 * cpu / n,
               "min_ms": 1000 * min(w for w, _ in samples), "max_ms": 1000 * max(w for w, _ in samples),
               "precision": "fp16" if impl.endswith("fp16") else "fp32"}
        if impl != "pytorch" and p == "recognize":
            results = outputs[impl, p]
            row["same_text_vs_pytorch"] = sum(a.text == b.text for a, b in zip(reference_texts, results)) / n
            row["max_confidence_diff_vs_pytorch"] = max(abs(a.confidence - b.confidence)
                                                        for a, b in zip(reference_texts, results))
        if impl != "pytorch" and p == "network":
            row["max_logprob_diff_vs_pytorch"] = max(
                float(max((a[b, :t] - o[b, :t]).abs().max() for b, t in enumerate(lengths.tolist())))
                for a, o, lengths in zip(outputs["pytorch", p], outputs[impl, p], frames))
        rows.append(row)

    print(f"{n} images, {args.threads} thread(s), batch size {args.batch_size}, median of {args.repeats}; "
          f"load average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs")
    # Wall time is what a user waits; process CPU time is what the run cost, and it moves less on a shared machine.
    for value in ("ms_per_image", "cpu_ms_per_image"):
        print(f"\n{value} (median of {args.repeats}):")
        print(speedup_table(rows, ["pass", "n", "threads", "batch_size"], impls, baseline="pytorch", value=value))
    print()
    for row in rows:
        if "same_text_vs_pytorch" in row:
            print(f"{row['impl']}: same text as pytorch on {100 * row['same_text_vs_pytorch']:.2f}% of {n} images, "
                  f"max confidence difference {row['max_confidence_diff_vs_pytorch']:.2e}")
        if "max_logprob_diff_vs_pytorch" in row:
            print(f"{row['impl']}: max log-prob difference over valid frames {row['max_logprob_diff_vs_pytorch']:.2e}")
    path = results_path("bench_onnx", cpu_name(), args.out)
    write_results(path, "onnx", rows, cpu=cpu_name(), cpu_count=os.cpu_count(), onnxruntime=onnxruntime.__version__,
                  model=args.model or "shipped default", data=str(args.data), opset=args.opset, repeats=args.repeats,
                  loadavg_start=load0, loadavg_end=load1,
                  network_shapes="images (B, 1, 32, W) float32 -> log-probs (B, T, K)")
    print(f"wrote {path}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
