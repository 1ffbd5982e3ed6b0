"""One small forward of every path of the CUDA LSTM recurrence, to run under compute-sanitizer.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck  python benchmarks/sanitize_lstm_cuda.py
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool racecheck python benchmarks/sanitize_lstm_cuda.py
    (also --tool synccheck and --tool initcheck)

PYTORCH_NO_CUDA_MEMORY_CACHING=1 gives every tensor its own allocation, so an out-of-range access is not hidden
inside a neighbouring cached block. Each case is checked against the op's eager statement; exit status 1 on a
mismatch. Shapes are small (the sanitizers are slow) but cover: H a multiple of 8 (16-byte paths) and not (scalar
paths), 1 and several CTAs per group, one and two directions, lengths with 0 and T, both exchange algorithms.
"""

from __future__ import annotations

import argparse
import sys

import torch

from crnn_fast.ops.lstm_cuda import lstm_layer_cuda, lstm_recurrence_eager

CASES = [  # B, T, H, D
    (3, 5, 40, 2),  # 2 CTAs per group, 16-byte x_proj copies and output stores
    (3, 4, 20, 2),  # 1 CTA, H % 8 != 0: scalar x_proj copies and output stores
    (9, 3, 72, 1),  # 3 CTAs, 2 n-tiles (one per batch-warp)
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["auto", "cluster", "cooperative", "all"], default="all")
    parser.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    algos = ["cluster", "cooperative"] if args.algo == "all" else [args.algo]
    if torch.cuda.get_device_capability()[0] < 9:
        algos = [a for a in algos if a != "cluster"]
    ok = True
    for algo in algos:
        for B, T, H, D in CASES:
            g = torch.Generator(device="cuda").manual_seed(B * T * H)

            def r(*shape, scale=1.0, g=g):
                return (scale * torch.randn(*shape, device="cuda", generator=g)).to(dtype)

            x_proj, w_hh = r(B, T, D * 4 * H), r(D, 4 * H, H, scale=H**-0.5)
            h0, c0 = r(D, B, H, scale=0.5), r(D, B, H, scale=0.5)
            lengths = torch.tensor(([T, 0, T - 1] * B)[:B])
            with torch.no_grad():
                got = lstm_layer_cuda(x_proj, w_hh, h0, c0, lengths, algo=algo)
                torch.cuda.synchronize()
                expected = lstm_recurrence_eager(x_proj.float(), w_hh.float(), h0.float(), c0.float(),
                                                 lengths.cuda())
            err = max((a.float() - b).abs().max().item() for a, b in zip(got, expected))
            good = err < (4e-3 if dtype == torch.float16 else 3e-2)
            ok &= good
            print(f"algo={algo:11s} B={B} T={T} H={H} D={D} {args.dtype}: max error {err:.2e} "
                  f"{'ok' if good else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
