#!/usr/bin/env python
"""LSTM benchmark: crnn_fast's fused Triton kernels vs torch.nn.LSTM (cuDNN), torch.compile of the eager reference
and crnn_fast's other backends (the CUDA C++ inference kernel when it is built), forward and forward+backward.

On a GPU machine, from the repository root:
    python benchmarks/bench_lstm.py                      # the issue's grid: B 1..1024, T 26/128, fp16/bf16/fp32
    python benchmarks/bench_lstm.py --batch 64 --time 26 --dtypes float16 --passes fwd
    python benchmarks/bench_lstm.py --tune               # sweep the Triton launch config (BH, BB, warps)

Times are medians of CUDA-event timings (triton.testing.do_bench). The table has a speedup column per
implementation (torch.nn.LSTM time / its time, > 1 is faster); max_abs_err is the forward output's error
against torch.nn.LSTM in float64 (same weights and input). The JSON goes to benchmarks/results/ (or --out,
or $BENCH_RESULTS_DIR) and is rewritten after every shape, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # crnn_fast from this source tree

DTYPES = ("float16", "bfloat16", "float32")
IMPLS = {  # --impls name -> table/JSON name
    "torch": "torch.nn.LSTM",
    "triton": "crnn_fast triton",
    "cuda": "crnn_fast cuda",
    "compile": "torch.compile(lstm_ref)",
    "ref": "lstm_ref eager",
}
BASELINE = IMPLS["torch"]
SHAPE_KEYS = ("pass", "dtype", "B", "T", "I", "H", "layers", "bidirectional")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64, 256, 1024], help="batch sizes B")
    p.add_argument("--time", type=int, nargs="+", default=[26, 128], help="sequence lengths T")
    p.add_argument("--input-size", type=int, default=512, help="input features I (default 512)")
    p.add_argument("--hidden", type=int, default=256, help="hidden size H (default 256)")
    p.add_argument("--layers", type=int, default=2, help="layers (default 2)")
    p.add_argument("--unidirectional", action="store_true", help="one direction (default: bidirectional)")
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    p.add_argument("--passes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    p.add_argument("--impls", nargs="+", default=["torch", "triton", "cuda", "compile"], choices=list(IMPLS),
                   help="implementations (cuda: only where crnn_fast's CUDA kernel is built; inference only)")
    p.add_argument("--compile-max-time", type=int, default=26,
                   help="torch.compile(lstm_ref) unrolls all T steps, so its compile time grows with T: time it "
                        "only for T <= this (default 26)")
    p.add_argument("--warmup-ms", type=float, default=25.0)
    p.add_argument("--rep-ms", type=float, default=100.0)
    p.add_argument("--no-accuracy", action="store_true", help="skip the max_abs_err column")
    p.add_argument("--out", default=None, help="folder for the JSON (default $BENCH_RESULTS_DIR or benchmarks/results)")
    p.add_argument("--no-json", action="store_true", help="print the table only")
    p.add_argument("--tune", action="store_true",
                   help="sweep the Triton kernels' launch config (block_h x block_b x num_warps) per shape instead; "
                        "defaults to B 8 64 256 1024, T 26, float16 unless given")
    p.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)  # CI: run the code paths on CPU
    args = p.parse_args(argv)
    if args.tune:
        if args.batch == p.get_default("batch"):
            args.batch = [8, 64, 256, 1024]
        if args.time == p.get_default("time"):
            args.time = [26]
        if args.dtypes == p.get_default("dtypes"):
            args.dtypes = ["float16"]
    return args


class Case:
    """One shape: the float32 master weights and input, and the float64 reference output."""

    def __init__(self, args, B, T, device):
        import torch

        gen = torch.Generator().manual_seed(0)
        self.B, self.T, self.device = B, T, device
        self.bidirectional = not args.unidirectional
        self.master = torch.nn.LSTM(args.input_size, args.hidden, args.layers, bidirectional=self.bidirectional,
                                    batch_first=True).to(device)
        self.x = torch.randn(B, T, args.input_size, generator=gen).to(device)
        self.exact = None

    def reference(self):
        import torch

        if self.exact is None:
            with torch.no_grad():
                self.exact = copy.deepcopy(self.master).double()(self.x.double())[0]
        return self.exact


def _make_impl(name, case, args, dtype, training):
    """A callable x -> output for implementation `name`, or None where it does not apply."""
    import torch

    from crnn_fast.nn import LSTM
    from crnn_fast.reference import lstm_ref

    D = 2 if case.bidirectional else 1
    if name == "torch":
        module = copy.deepcopy(case.master).to(dtype).train(training)
        return lambda x: module(x)[0]
    if name in ("triton", "ref"):
        module = LSTM(args.input_size, args.hidden, args.layers, bidirectional=case.bidirectional, batch_first=True,
                      backend=name).to(case.device)
        module.load_state_dict(case.master.state_dict())
        module = module.to(dtype).train(training)
        return lambda x: module(x)[0]
    if name == "cuda":
        if training:
            return None
        try:
            from crnn_fast.ops.lstm_cuda import cuda_lstm_supported, lstm_cuda_forward
        except ImportError:
            return None
        if not cuda_lstm_supported(dtype, args.hidden, case.device):
            return None
        weights = [w.detach().to(dtype) for w in case.master._flat_weights]
        return lambda x: lstm_cuda_forward(weights, x, num_layers=args.layers, bidirectional=case.bidirectional,
                                           batch_first=True)[0]
    if name == "compile":
        if case.T > args.compile_max_time or case.device.type != "cuda":
            return None
        weights = [w.detach().to(dtype).requires_grad_(training) for w in case.master._flat_weights]
        L = args.layers

        def eager(x, *w):
            return lstm_ref(x, w, num_layers=L, bidirectional=D == 2, batch_first=True)[0]

        compiled = torch.compile(eager, dynamic=False)
        return lambda x: compiled(x, *weights)
    raise ValueError(name)


def _timer(args):
    if args.cpu_smoke:
        def cpu_ms(fn):
            fn()
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3

        return cpu_ms
    from common import bench_ms

    return lambda fn: bench_ms(fn, args.warmup_ms, args.rep_ms)


def measure(case, impl, args, dtype, pass_):
    """(median_ms, max_abs_err or None) for one implementation, pass and dtype; None if it does not apply."""
    import torch

    training = pass_ == "fwd+bwd"
    fn = _make_impl(impl, case, args, dtype, training)
    if fn is None:
        return None
    x = case.x.to(dtype)
    err = None
    if not training:
        def run():
            with torch.no_grad():
                return fn(x)

        if not args.no_accuracy:
            err = (run().double() - case.reference()).abs().max().item()
    else:
        x = x.detach().requires_grad_()
        grad = torch.randn_like(fn(x))

        def run():
            fn(x).backward(grad)

    return _timer(args)(run), err


def _base_row(args, case, dtype, pass_):
    return {"pass": pass_, "dtype": dtype, "B": case.B, "T": case.T, "I": args.input_size, "H": args.hidden,
            "layers": args.layers, "bidirectional": case.bidirectional}


def _plan_text(args, case, dtype_obj):
    from crnn_fast.triton import lstm as triton_lstm

    D = 2 if case.bidirectional else 1
    try:
        p = triton_lstm._plan(case.B, args.hidden, D, dtype_obj, case.device)
    except ValueError as exc:
        return f"unsupported: {exc}"
    tiles = math.ceil(case.B / p.BB)
    launches = case.T if p.mode == "per_step" else math.ceil(tiles / p.tiles_per_launch)
    return f"BH={p.BH} NSPLIT={p.NSPLIT} BB={p.BB} warps={p.num_warps} mode={p.mode} launches/layer={launches}"


def run_benchmark(args, device):
    import torch
    from common import results_path, speedup_table, write_results

    rows, plans = [], {}
    path = None if args.no_json else results_path("lstm", _device_label(args), args.out)
    for B, T in itertools.product(args.batch, args.time):
        case = Case(args, B, T, device)
        for dtype in args.dtypes:
            dtype_obj = getattr(torch, dtype)
            if "triton" in args.impls:
                plans[f"B={B} T={T} {dtype}"] = _plan_text(args, case, dtype_obj)
            for pass_, impl in itertools.product(args.passes, args.impls):
                try:
                    result = measure(case, impl, args, dtype_obj, pass_)
                except Exception as exc:  # report and go on: one failing impl must not lose the others' numbers
                    print(f"! {IMPLS[impl]} {pass_} B={B} T={T} {dtype}: {type(exc).__name__}: {exc}",
                          file=sys.stderr)
                    traceback.print_exc(limit=3)
                    continue
                if result is None:
                    continue
                ms, err = result
                row = {"impl": IMPLS[impl], **_base_row(args, case, dtype, pass_), "median_ms": round(ms, 5)}
                if err is not None:
                    row["max_abs_err"] = err
                rows.append(row)
                print(f"  {row['impl']:>24} {pass_:>7} {dtype:>8} B={B:<5} T={T:<4} {ms:9.4f} ms"
                      + (f"  err {err:.3g}" if err is not None else ""), flush=True)
            if path is not None:
                write_results(path, "lstm", rows, values=["median_ms", "max_abs_err"], triton_plans=plans,
                              timing="median of triton.testing.do_bench CUDA-event timings")
        del case
        if device.type == "cuda":
            torch.cuda.empty_cache()
    impls = [IMPLS[i] for i in args.impls]
    for pass_ in args.passes:
        selected = [r for r in rows if r["pass"] == pass_]
        if selected:
            print(f"\n{pass_}  (I={args.input_size} H={args.hidden} layers={args.layers} "
                  f"{'bidirectional' if not args.unidirectional else 'unidirectional'})")
            print(speedup_table(selected, ("dtype", "B", "T"), impls, BASELINE))
    if "triton" in args.impls and plans:
        print("\nTriton launch plans:")
        for key, text in plans.items():
            print(f"  {key}: {text}")
    if path is not None:
        print(f"\nwrote {path}")
    return rows


def run_tune(args, device):
    """Time the Triton kernels over a grid of launch configs per shape; print the best per shape."""
    import torch
    from common import results_path, write_results

    from crnn_fast.triton.lstm import lstm_config

    grid = [dict(block_h=bh, block_b=bb, num_warps=nw) for bh in (16, 32, 64) for bb in (16, 32, 64)
            for nw in (4, 8)]
    rows = []
    path = None if args.no_json else results_path("lstm-tune", _device_label(args), args.out)
    for B, T, dtype in itertools.product(args.batch, args.time, args.dtypes):
        case = Case(args, B, T, device)
        results = []
        for config in [{}] + grid:
            label = "heuristic" if not config else " ".join(f"{k}={v}" for k, v in config.items())
            for pass_ in args.passes:
                try:
                    with lstm_config(**config):
                        ms, err = measure(case, "triton", args, getattr(torch, dtype), pass_)
                except Exception as exc:
                    print(f"  {label:>34} {pass_:>7}: {type(exc).__name__}: {str(exc)[:100]}", flush=True)
                    continue
                results.append((pass_, ms, label))
                rows.append({"impl": f"crnn_fast triton [{label}]", **_base_row(args, case, dtype, pass_),
                             "median_ms": round(ms, 5), **({"max_abs_err": err} if err is not None else {})})
                print(f"  {label:>34} {pass_:>7} B={B} T={T} {dtype}: {ms:.4f} ms", flush=True)
            if path is not None:
                write_results(path, "lstm-tune", rows, values=["median_ms", "max_abs_err"])
        for pass_ in args.passes:
            ranked = sorted((ms, label) for p, ms, label in results if p == pass_)
            print(f"best {pass_} B={B} T={T} {dtype}: " + ", ".join(f"{label} {ms:.4f} ms" for ms, label in ranked[:3]))
    if path is not None:
        print(f"\nwrote {path}")
    return rows


def _device_label(args):
    from common import device_name

    return device_name() + ("-cpu-smoke" if args.cpu_smoke else "")


def main(argv=None):
    args = parse_args(argv)
    if args.cpu_smoke:  # tiny shapes through the Triton interpreter: checks this script, times nothing useful
        import os

        os.environ.setdefault("TRITON_INTERPRET", "1")
        import torch

        device = torch.device("cpu")
        args.impls = [i for i in args.impls if i in ("torch", "triton", "ref")]
    else:
        from common import require_cuda

        require_cuda("benchmarks/bench_lstm.py")
        import torch

        device = torch.device("cuda")
    return run_tune(args, device) if args.tune else run_benchmark(args, device)


if __name__ == "__main__":
    main()
