"""Training throughput on the CPU: images/s of one training step (forward, CTC loss, backward, AdamW) of a
CRNN, over the same pre-rendered synthetic batches, for each setting: precision (fp32 / bf16 autocast),
torch threads, channels_last and torch.compile. On a CPU without fast bf16 kernels (AVX2 only) the bf16 settings
are left out unless named.

    python benchmarks/bench_train_cpu.py [--model crnn_small_ascii] [--batch-size 32] [--batches 6]
        [--steps 12] [--threads 1 2] [--max-line-chars 100] [--settings fp32,bf16,...]

Rendering is not timed (it runs in data workers during training); every setting steps through the same
batches, each of them equally often. images/s is the images of the timed steps over their total time: a wide
batch of long lines takes 20x the time of a batch of short words, so the median step would overstate what
training gets. Writes benchmarks/results/bench_train_cpu-<device>-<date>.json.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
from common import device_name, results_path, write_results  # benchmarks/common.py

from crnn_fast.data.synth import RenderConfig, SynthGenerator
from crnn_fast.formats.image_batch import Batch, pad_batch
from crnn_fast.models.pretrained import load_pretrained
from crnn_fast.train import cpu_has_fast_bf16, ctc_loss

SETTINGS = {
    "fp32": dict(amp=False, channels_last=False, compile=False),
    "fp32+channels_last": dict(amp=False, channels_last=True, compile=False),
    "fp32+compile": dict(amp=False, channels_last=False, compile=True),
    "bf16": dict(amp=True, channels_last=False, compile=False),
    "bf16+channels_last": dict(amp=True, channels_last=True, compile=False),
    "bf16+compile": dict(amp=True, channels_last=False, compile=True),
}


def train_step(model, optimizer, batch, charset, opts: dict) -> None:
    images = batch.images.contiguous(memory_format=torch.channels_last) if opts["channels_last"] else batch.images
    loss = ctc_loss(model, Batch(images, batch.widths, batch.texts), charset, torch.device("cpu"), opts["amp"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="shipped model name or .safetensors path")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6, help="distinct pre-rendered batches")
    parser.add_argument("--steps", type=int, default=12,
                        help="timed steps per setting (after 3 warm-up steps); a multiple of --batches")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-line-chars", type=int, default=100)
    parser.add_argument("--settings", default=None,
                        help=f"comma-separated, of {', '.join(SETTINGS)} (default: all; without the bf16 ones on a "
                             "CPU that has no fast bf16 kernels, where one step takes over 10 s)")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. what else the machine was running)")
    args = parser.parse_args()

    if args.steps <= 0 or args.batches <= 0 or args.steps % args.batches:
        parser.error(f"--steps ({args.steps}) must be a positive multiple of --batches ({args.batches}), so that "
                     "every batch is timed equally often")
    fast_bf16 = cpu_has_fast_bf16()
    settings = args.settings.split(",") if args.settings else [
        name for name, opts in SETTINGS.items() if fast_bf16 or not opts["amp"]]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        parser.error(f"--settings: unknown {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    capability = torch.backends.cpu.get_cpu_capability()
    if not fast_bf16:
        print(f"this CPU ({capability}) has no fast bf16 kernels: bf16 autocast falls back to slow reference kernels"
              + ("" if args.settings else "; its settings are left out (name them with --settings to run them)"))
    base, charset, _meta = load_pretrained(args.model)
    gen = SynthGenerator("train", charset=charset, max_line_chars=args.max_line_chars,
                         render=RenderConfig(max_width=1600))
    rng = random.Random("bench_train_cpu")
    samples = sorted((gen.sample(rng) for _ in range(args.batch_size * args.batches)), key=lambda s: s[0].shape[1])
    batches = [pad_batch([s[0] for s in samples[i:i + args.batch_size]], [s[1] for s in samples[i:i + args.batch_size]])
               for i in range(0, len(samples), args.batch_size)]
    mean_width = statistics.mean(b.images.shape[-1] for b in batches)
    rows = []
    out = results_path("bench_train_cpu", device_name())
    print(f"{len(batches)} batches of {args.batch_size}, mean padded width {mean_width:.0f} px")
    print(f"{'setting':22s} {'threads':>7s} {'images/s':>9s} {'median ms/step':>14s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in settings:
            opts = SETTINGS[name]
            model = copy.deepcopy(base).train()
            if opts["channels_last"]:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            step_model = torch.compile(model, dynamic=True) if opts["compile"] else model

            for i in range(3):
                train_step(step_model, optimizer, batches[i % len(batches)], charset, opts)
            times = []
            for i in range(args.steps):
                start = time.perf_counter()
                train_step(step_model, optimizer, batches[i % len(batches)], charset, opts)
                times.append(time.perf_counter() - start)
            ms = statistics.median(times) * 1e3
            ips = args.batch_size * len(times) / sum(times)
            rows.append({"impl": name, "threads": threads, "B": args.batch_size, "mean_width": round(mean_width),
                         "max_line_chars": args.max_line_chars, "median_ms": ms, "images_per_s": ips,
                         "images_per_s_of": "total time", "cpu_capability": capability, "fast_bf16": fast_bf16})
            print(f"{name:22s} {threads:7d} {ips:9.1f} {ms:14.1f}", flush=True)
            write_results(out, "train_cpu", rows, note=args.note)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
