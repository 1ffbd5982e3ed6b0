"""Ahead-of-time compile of the Triton LSTM kernels for sm_90 (H100/H200), with no GPU.

The kernels are compiled exactly as the launcher would specialise them for CRNN's shapes (the plan's block
sizes, launch mode and warps), down to a cubin, and must fit the 227 KiB of shared memory an sm_90 block may
use. Runs in a subprocess with TRITON_INTERPRET=0, since tests/conftest.py makes this process's kernels
interpreted ones. Register spills are printed (not asserted: whether they cost time is the GPU's call).
"""

import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")

SM90_MAX_SHARED = 227 * 1024

SCRIPT = r"""
import json, sys
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from crnn_fast.triton import lstm as L

TY = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}
STRIDES = {"sx_t", "sx_b", "shs_s", "shs_b", "so_t", "so_b", "sdo_t", "sdo_b", "sg_t", "sg_b", "scs_s", "scs_b"}


def compile_one(kind, B, H, dtype, save):
    with L.lstm_config(sm_count=132):
        plan = L._plan(B, H, 2, dtype, torch.device("cuda"), interpret=False)
    fn = L._lstm_fwd_kernel if kind == "fwd" else L._lstm_bwd_kernel
    acc = "fp64" if dtype == torch.float64 else "fp32"
    consts = dict(BH=plan.BH, BB=plan.BB, HP=plan.HP, NSPLIT=plan.NSPLIT, GRID_SYNC=plan.mode == "grid_sync",
                  ACC_F64=dtype == torch.float64, DOT_F32=False, PRECISION="ieee")
    consts.update(dict(SAVE=save, HAS_BIAS=True) if kind == "fwd" else dict(HAS_DOUT=True))
    special = {"len_ptr": "*i64", "counter_ptr": "*i32", "bias_ptr": "*" + acc, "cs_ptr": "*" + acc}
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = special.get(name, "*" + TY[dtype])
        else:
            signature[name] = "i32"
        if name.endswith("_ptr") or name in STRIDES or (name == "H" and H % 16 == 0):
            attrs[(i,)] = [["tt.divisibility", 16]]
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=plan.num_warps, num_stages=1))
    ptx = kernel.asm["ptx"]
    return dict(kind=kind, B=B, H=H, dtype=TY[dtype], save=save, BH=plan.BH, BB=plan.BB, mode=plan.mode,
                num_warps=plan.num_warps, shared=kernel.metadata.shared, cubin_bytes=len(kernel.asm["cubin"]),
                grid_atomic=("atom.global.gpu.acq_rel" in ptx), mma=("wgmma" in ptx or "mma.sync" in ptx))


# The grid-sync forward that trains, the largest backward tile (196 KB of shared memory), bf16 inference,
# fp32 without TF32 (FMA dots), fp64 (the GPU gradcheck's dtype).
cases = [("fwd", 64, 256, torch.float16, True), ("bwd", 1024, 256, torch.float16, False),
         ("fwd", 1024, 256, torch.bfloat16, False), ("bwd", 64, 256, torch.float32, False),
         ("bwd", 5, 40, torch.float64, False)]
print(json.dumps([compile_one(*c) for c in cases]))
"""


def test_kernels_compile_for_sm90():
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"this triton ({triton.__version__}) has no ASTSource/GPUTarget ahead-of-time API: {exc}")
    env = dict(os.environ, TRITON_INTERPRET="0")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0 and ("ptxas" in proc.stderr and "not found" in proc.stderr.lower()):
        pytest.skip(f"triton's ptxas is unavailable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in results:
        print(r)
        assert r["cubin_bytes"] > 0, r
        assert r["mma"] == (r["dtype"] in ("fp16", "bf16", "fp64")), r  # fp32 without TF32: FMA, as torch
        assert r["shared"] <= SM90_MAX_SHARED, f"needs {r['shared']} bytes of shared memory: {r}"
        assert r["grid_atomic"] == (r["mode"] == "grid_sync"), r
    assert any(r["mode"] == "grid_sync" for r in results)
