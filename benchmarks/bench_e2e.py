"""End-to-end batch recognition: images/s and per-batch latency of crnn_fast's Recognizer against the same model
run the plain way, side by side in one process on one device.

Inputs are encoded PNG bytes held in memory (benchmarks/heldout, repeated to --n-words / --n-lines images), so
every system pays for decoding, preprocessing, the network and decoding to text, and none for disk reads.

Systems (all with the shipped default model's weights):
  eager          the same network built from torch.nn modules (torch.nn.LSTM), float32; per batch: PIL decode
                 and resize to height 32 on the host in the main thread, padded to the batch's widest image in
                 input order, one upload, greedy decoding (argmax on the device, collapse on the host)
  eager+pyctc    eager's network, log-probs copied to the host, pyctcdecode beam search (beam --beam) per image
  compiled       torch.compile(eager's network, dynamic=True); compile time excluded (warm-up batches)
  crnn_fast      Recognizer: decode threads, width-sorted batches, resize/normalise/pad on the device, network
                 under autocast (--precision, default fp16 on CUDA, fp32 on the CPU), crnn_fast LSTM backend
                 "auto", greedy decoding on the device, one copy of the text per batch
  crnn_fast beam crnn_fast with CTCDecoder beam search (beam --beam)
Every system is called once per batch of --batch-size images; the call returns the texts, so its wall time is the
batch's latency (p50/p99 over the batches) and images/s = images / summed call time. "crnn_fast stream" feeds all
images through one recognize() call instead (batches pipelined with decoding: the throughput a user gets).

Network-only rows (inputs already preprocessed on the device): "cnn" = the CNN alone, "net+greedy" = CNN + LSTM
+ greedy decoding to host text, eager and crnn_fast; "+% over cnn" is what the LSTMs and decoding add.

Run: python benchmarks/bench_e2e.py [--batch-sizes 1,8,64,256,1024] [--budget 20] [--device cuda]
     [--systems eager,eager+pyctc,compiled,crnn_fast,crnn_fast beam] [--out DIR]
Writes benchmarks/results/bench_e2e-<device>-<date>.json.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_name, results_path, write_results  # noqa: E402

from crnn_fast.data.datasets import open_dataset, prepare_image  # noqa: E402
from crnn_fast.formats.image_batch import pad_batch  # noqa: E402
from crnn_fast.recognize import Recognizer  # noqa: E402

HELDOUT = Path(__file__).resolve().parent / "heldout"
SYSTEMS = ("eager", "eager+pyctc", "compiled", "crnn_fast", "crnn_fast beam", "crnn_fast stream")


class PlainBiLSTM(nn.Module):
    def __init__(self, block):
        super().__init__()
        rnn = block.rnn
        self.rnn = nn.LSTM(rnn.input_size, rnn.hidden_size, bidirectional=True, batch_first=True)
        self.rnn.load_state_dict(rnn.state_dict())
        self.embedding = copy.deepcopy(block.embedding)

    def forward(self, x):
        return self.embedding(self.rnn(x)[0])


class PlainCRNN(nn.Module):
    """crnn_fast's CRNN rebuilt from torch.nn modules only: what a user without crnn_fast runs."""

    def __init__(self, model):
        super().__init__()
        self.cnn = copy.deepcopy(model.cnn)
        self.rnn = nn.Sequential(*[PlainBiLSTM(block) for block in model.rnn])

    def forward(self, images):
        x = self.cnn(images).squeeze(2).permute(0, 2, 1)
        return self.rnn(x).log_softmax(-1)


def load_images(subsets: list[str], n: int) -> list[bytes]:
    data = []
    for subset in subsets:
        ds = open_dataset(HELDOUT / subset)
        data += [ds.path(i).read_bytes() for i in range(len(ds))]
    return [data[i % len(data)] for i in range(n)]


def greedy_collapse(ids: list[int], blank: int = 0) -> list[int]:
    out, prev = [], blank
    for t in ids:
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out


def make_plain_system(net, charset, device, beam: int | None):
    """Host preprocessing + `net` + greedy (or pyctcdecode beam search) decoding of one batch of encoded images."""
    decoder = None
    if beam:
        import logging

        import pyctcdecode

        logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
        decoder = pyctcdecode.build_ctcdecoder([""] + list(charset.characters))

    @torch.inference_mode()
    def run(batch: list[bytes]) -> list[str]:
        arrays = [prepare_image(b) for b in batch]
        images = pad_batch(arrays).images.to(device)
        log_probs = net(images)
        if decoder is None:
            ids = log_probs.argmax(-1).cpu().tolist()
            return [charset.decode(greedy_collapse(row)) for row in ids]
        lp = log_probs.float().cpu().numpy()
        return [decoder.decode(lp[i], beam_width=beam) for i in range(len(batch))]

    return run


def time_batches(run, images: list[bytes], batch_size: int, budget: float, sync) -> dict:
    """Call run() on consecutive batches until all images are done or `budget` seconds are spent."""
    run(images[:batch_size])  # warm-up (allocations, cuDNN plans, compiled graphs)
    sync()
    latencies, done, texts = [], 0, []
    spent = 0.0
    for lo in range(0, len(images), batch_size):
        batch = images[lo: lo + batch_size]
        t0 = time.perf_counter()
        texts += run(batch)
        sync()
        dt = time.perf_counter() - t0
        latencies.append(dt * 1000)
        done += len(batch)
        spent += dt
        if spent > budget:
            break
    lat = sorted(latencies)
    return {"images": done, "batches": len(lat), "images_per_s": done / spent,
            "p50_ms": statistics.median(lat), "p99_ms": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
            "texts": texts}


def network_rows(recognizer, plain, images: list[bytes], batch_size: int, sync, reps: int) -> list:
    """CNN alone vs CNN + LSTMs + greedy decoding to host text, on a batch already preprocessed on the device."""
    model, device, precision = recognizer.model, recognizer.device, recognizer.precision

    batch = (images * (batch_size // len(images) + 1))[:batch_size]
    arrays = [prepare_image(b) for b in batch]
    padded = pad_batch(arrays)
    x = padded.images.to(device)
    widths = padded.widths
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    x_cl = x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x

    def ours_net():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            lp = model(x_cl, widths).float()
        out = recognizer._greedy(lp, model.output_lengths(widths).to(lp.device))  # the recognizer's decoding
        return out.tokens.cpu()

    def ours_cnn():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return model.cnn(x_cl)

    def plain_net():
        return plain(x).argmax(-1).cpu()

    def plain_cnn():
        return plain.cnn(x)

    rows = []
    with torch.inference_mode():
        for name, fn in (("eager cnn", plain_cnn), ("eager net+greedy", plain_net), ("crnn_fast cnn", ours_cnn),
                         ("crnn_fast net+greedy", ours_net)):
            fn()
            sync()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                sync()
                times.append((time.perf_counter() - t0) * 1000)
            rows.append({"kind": "network", "system": name, "batch_size": batch_size, "width": int(x.shape[-1]),
                         "median_ms": statistics.median(times)})
    for prefix in ("eager", "crnn_fast"):
        cnn = next(r for r in rows if r["system"] == f"{prefix} cnn")["median_ms"]
        net = next(r for r in rows if r["system"] == f"{prefix} net+greedy")
        net["added_over_cnn_pct"] = 100.0 * (net["median_ms"] / cnn - 1.0)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", default="1,8,64,256,1024")
    p.add_argument("--n-words", type=int, default=4096)
    p.add_argument("--n-lines", type=int, default=1024)
    p.add_argument("--budget", type=float, default=20.0, help="seconds per (system, data, batch size) at most")
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=None, help="crnn_fast autocast: fp16/bf16/fp32 (default fp16 on CUDA)")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--data", default="words,lines")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU runs)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        p.error(f"--systems: unknown {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    recognizer = Recognizer.from_pretrained(device=device, precision=precision)
    model, charset = recognizer.model, recognizer.charset
    plain = PlainCRNN(model.float()).to(device).eval()
    runs = {}
    if "eager" in systems:
        runs["eager"] = make_plain_system(plain, charset, device, None)
    if "eager+pyctc" in systems:
        runs["eager+pyctc"] = make_plain_system(plain, charset, device, args.beam)
    if "compiled" in systems:
        runs["compiled"] = make_plain_system(torch.compile(plain, dynamic=True), charset, device, None)
    if "crnn_fast" in systems:
        runs["crnn_fast"] = lambda batch: [r.text for r in recognizer.recognize(batch, batch_size=len(batch))]
    if "crnn_fast beam" in systems:
        runs["crnn_fast beam"] = lambda batch: [r.text for r in recognizer.recognize(batch, batch_size=len(batch),
                                                                                       beam=args.beam)]

    data = {"words": (["clean_words", "degraded_words", "codes_numbers"], args.n_words),
            "lines": (["lines"], args.n_lines)}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    out_path = results_path("bench_e2e", device_name(), args.out)
    rows: list[dict] = []
    meta = {"notes": __doc__, "precision": precision, "beam": args.beam, "budget_s": args.budget,
            "lstm_backend": model.lstm_backend, "torch_threads": torch.get_num_threads()}
    for kind in [d.strip() for d in args.data.split(",") if d.strip()]:
        subsets, n = data[kind]
        images = load_images(subsets, n)
        for bs in batch_sizes:
            reference = None
            for name, run in runs.items():
                r = time_batches(run, images, bs, args.budget, sync)
                texts = r.pop("texts")
                if name == "eager":
                    reference = texts
                agree = (sum(a == b for a, b in zip(texts, reference)) / min(len(texts), len(reference))
                         if reference else None)
                rows.append({"kind": "e2e", "data": kind, "system": name, "batch_size": bs, **r,
                             "agreement_with_eager": agree})
                print(f"{kind:5s} bs {bs:5d} {name:16s} {r['images_per_s']:9.1f} img/s  p50 {r['p50_ms']:8.2f} ms  "
                      f"p99 {r['p99_ms']:8.2f} ms  ({r['images']} images)", flush=True)
            if "crnn_fast stream" in systems:
                t0 = time.perf_counter()
                recognizer.recognize(images, batch_size=bs)
                sync()
                dt = time.perf_counter() - t0
                rows.append({"kind": "e2e", "data": kind, "system": "crnn_fast stream", "batch_size": bs,
                             "images": len(images), "images_per_s": len(images) / dt})
                print(f"{kind:5s} bs {bs:5d} {'crnn_fast stream':16s} {len(images) / dt:9.1f} img/s", flush=True)
            if bs >= 8:
                for row in network_rows(recognizer, plain, images, bs, sync, reps=5):
                    row["data"] = kind
                    rows.append(row)
                    extra = f"  +{row['added_over_cnn_pct']:.0f}% over cnn" if "added_over_cnn_pct" in row else ""
                    print(f"{kind:5s} bs {bs:5d} {row['system']:22s} {row['median_ms']:9.2f} ms{extra}", flush=True)
            write_results(out_path, "e2e", rows, **meta)
    print(summary(rows))
    print(f"wrote {out_path}")
    return 0


def summary(rows: list[dict]) -> str:
    """images/s per system and speedups of crnn_fast over the plain systems."""
    lines = ["data   batch  " + "  ".join(f"{s:>14s}" for s in SYSTEMS) + "   fast/eager  beam/pyctc"]
    keys = sorted({(r["data"], r["batch_size"]) for r in rows if r["kind"] == "e2e"})
    for data, bs in keys:
        got = {r["system"]: r["images_per_s"] for r in rows if r["kind"] == "e2e" and r["data"] == data
               and r["batch_size"] == bs}
        cells = "  ".join(f"{got[s]:14.1f}" if s in got else f"{'-':>14s}" for s in SYSTEMS)
        fe = f"{got['crnn_fast'] / got['eager']:.2f}x" if "crnn_fast" in got and "eager" in got else "-"
        bp = (f"{got['crnn_fast beam'] / got['eager+pyctc']:.2f}x" if "crnn_fast beam" in got
              and "eager+pyctc" in got else "-")
        lines.append(f"{data:6s} {bs:5d}  {cells}   {fe:>10s}  {bp:>10s}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
