"""Throughput of batch recognition on one machine: plain Recognizer.recognize vs the Ray Data pipeline
(crnn_fast.integrations.ray: read_binary_files -> map_batches(RayRecognizer) on an actor pool), side by side.

Same images, same model, same batch, same threads in total:
  images: N distinct files (hard links to the held-out PNGs, repeated), read from disk by both sides.
  batch: --batch-size images per forward pass, and windows of 8 batches sorted by width before batching (the
    plain run streams through Recognizer.recognize_iter, whose default window that is, as crnn-fast recognize
    does; the Ray pipeline gives each map_batches call that many rows).
  threads: T = --threads torch threads in total (default: every core). The plain run uses T threads in one
    process; Ray runs A actors x T/A threads each, for A = 1 (the plain run's layout, in an actor) and A = T (one
    thread per actor, the usual Ray layout). The local cluster gets T + 1 logical CPUs: T for the actors and one
    for the read tasks (actors holding every CPU would leave the reads unschedulable). Reading is I/O, and
    image decoding runs in the actors, so the compute threads stay T on both sides.
Timing: Ray's cluster start is left out (a cluster serves many jobs); everything after it is in: the actors'
start (process, torch import, model load), reading, recognising, and streaming the results to the driver, as
`python -m crnn_fast.integrations.ray` does. The plain run has its model loaded and warmed up first. A Ray job
also pays a fixed cost that a longer job spreads thinner: `fixed s` is a job over --batch-size images, run just
before each Ray run (information only, not subtracted: later jobs start faster, on warm caches). Each
configuration runs --repeats times, alternating; medians are reported. agree: share of images whose text
equals the plain run's (below 1 only because the CNN sees the padding of a batch's neighbours, and the two
sides batch images differently).

    python benchmarks/bench_ray.py [--images 4000] [--threads T] [--batch-size 64] [--repeats 3] [--out DIR]

Writes benchmarks/results/bench_ray-<cpu>-<date>.json. Issue 9 target: Ray >= 90% of the plain images/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_name, results_path, write_results  # noqa: E402

from crnn_fast.integrations import ray as ray_integration  # noqa: E402

HELDOUT = Path(__file__).resolve().parent / "heldout"
PLAIN = "Recognizer"
RAY = "ray_data"


def make_images(folder: Path, count: int) -> list[str]:
    """`count` distinct files in `folder`, hard links (copies where links fail) to the held-out PNGs in turn."""
    sources = sorted(HELDOUT.glob("*/*.png"))
    if not sources:
        sys.exit(f"no held-out PNGs under {HELDOUT}")
    paths = []
    for i in range(count):
        target = folder / f"{i:06d}.png"
        try:
            os.link(sources[i % len(sources)], target)
        except OSError:
            shutil.copyfile(sources[i % len(sources)], target)
        paths.append(str(target))
    return paths


def run_plain(paths: list[str], args) -> dict:
    import torch

    from crnn_fast.recognize import Recognizer

    torch.set_num_threads(args.threads)
    recognizer = Recognizer.from_pretrained(args.model, device="cpu", batch_size=args.batch_size)
    recognizer.recognize(paths[: args.batch_size])  # warm-up: allocator, first-call dispatch
    if recognizer.window_batches != ray_integration.MODEL_BATCHES_PER_CALL:
        sys.exit("Recognizer's window_batches and the Ray pipeline's rows per call differ: the comparison would "
                 "not sort the same windows")
    start = time.perf_counter()
    texts = {path: result.text for path, result in zip(paths, recognizer.recognize_iter(paths))}
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "texts": texts}


def ray_job(paths: list[str], args, actors: int) -> tuple[float, dict]:
    """Seconds for the whole Ray job over `paths`, and the texts by path."""
    threads_per_actor = args.threads // actors
    dataset = ray_integration.build_dataset(paths, model=args.model, device="cpu", batch_size=args.batch_size,
                                            concurrency=actors, num_cpus=threads_per_actor)
    texts = {}
    start = time.perf_counter()
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        texts.update(zip(batch["id"].tolist(), batch["text"].tolist()))
    return time.perf_counter() - start, texts


def run_ray(paths: list[str], args, actors: int) -> dict:
    fixed_s, _ = ray_job(paths[: args.batch_size], args, actors)  # start actors, read, one call, results back
    seconds, texts = ray_job(paths, args, actors)
    return {"seconds": seconds, "texts": texts, "fixed_s": fixed_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000, help="images per run (held-out PNGs repeated)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in total")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (median reported)")
    parser.add_argument("--model", default=None, help="shipped model name or .safetensors path")
    parser.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    if args.images < 1 or args.threads < 1 or args.batch_size < 1 or args.repeats < 1:
        parser.error("--images, --threads, --batch-size and --repeats must be positive")
    ray = ray_integration.import_ray()

    layouts = sorted({1, args.threads})  # actors: the plain run's layout, and one thread per actor
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        paths = make_images(Path(tmp), args.images)
        ray.init(num_cpus=args.threads + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            for repeat in range(args.repeats):
                configs = [(PLAIN, None)] + [(RAY, a) for a in layouts]
                if repeat % 2:
                    configs.reverse()  # alternate the order: a busy machine's load drifts
                for impl, actors in configs:
                    result = run_plain(paths, args) if impl == PLAIN else run_ray(paths, args, actors)
                    key = PLAIN if impl == PLAIN else f"{RAY} {actors}x{args.threads // actors}"
                    runs.setdefault(key, []).append(result)
                    print(f"  repeat {repeat + 1}: {key}: {args.images / result['seconds']:.1f} images/s",
                          file=sys.stderr)
        finally:
            ray.shutdown()

    reference_texts = runs[PLAIN][0]["texts"]
    plain_rate = statistics.median(args.images / r["seconds"] for r in runs[PLAIN])
    rows = []
    for key, results in runs.items():
        actors = None if key == PLAIN else int(key.split()[1].split("x")[0])
        rates = [args.images / r["seconds"] for r in results]
        rate = statistics.median(rates)
        row = {"impl": PLAIN if key == PLAIN else RAY, "actors": actors,
               "threads_per_actor": None if actors is None else args.threads // actors,
               "threads_total": args.threads, "images": args.images, "batch_size": args.batch_size,
               "rows_per_call": args.batch_size * ray_integration.MODEL_BATCHES_PER_CALL,
               "seconds": round(statistics.median(r["seconds"] for r in results), 3),
               "images_per_s": round(rate, 2), "images_per_s_runs": [round(x, 2) for x in rates],
               "vs_plain": round(rate / plain_rate, 3)}
        if actors is not None:
            row["fixed_s"] = round(statistics.median(r["fixed_s"] for r in results), 3)
        row["agree"] = round(statistics.median(
            statistics.mean(r["texts"].get(p) == t for p, t in reference_texts.items()) for r in results), 4)
        rows.append(row)

    header = f"{'impl':<12} {'threads':>7} {'images/s':>9} {'runs':>15} {'vs plain':>8} {'fixed s':>8} {'agree':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        layout = str(args.threads) if row["actors"] is None else f"{row['actors']}x{row['threads_per_actor']}"
        each = "/".join(f"{x:.0f}" for x in row["images_per_s_runs"])
        fixed = "-" if row.get("fixed_s") is None else f"{row['fixed_s']:.2f}"
        print(f"{row['impl']:<12} {layout:>7} {row['images_per_s']:>9.1f} {each:>15} {row['vs_plain']:>7.2f}x "
              f"{fixed:>8} {row['agree']:>6.3f}")
    load = os.getloadavg()
    path = results_path("bench_ray", device_name(), args.out)
    write_results(path, "ray", rows, ray=ray.__version__, cpu_count=os.cpu_count(), niceness=os.nice(0),
                  loadavg_after=[round(x, 2) for x in load], model=args.model or "default")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
