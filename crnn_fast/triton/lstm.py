"""Fused LSTM recurrence in Triton: forward and backward (BPTT), one launch per layer, both directions at once.

Dimension glossary
------------------
B    batch                              T    time steps
I    input features of a layer          H    hidden size
D    directions: 1, or 2 when bidirectional (d = 0 runs forward in time, d = 1 backward)
G    4H gate rows of one direction, in torch's order i, f, g, o
HP   H rounded up to a power of two (>= 16): the K extent of the per-step dots
BH   hidden units owned by one program (power of two >= 16)
NSPLIT = cdiv(H, BH): programs that share one (batch tile, direction) — a "group"
BB   batch rows owned by one program (power of two >= 16): the batch tile
S    slots of the h/c step buffers: T + 1 when saving for backward, else 2 (ping-pong)

Tensors (logical shapes; "x layout" is (T, B, ·), or (B, T, ·) in memory when batch_first):
xproj   (T, B, D*G)  x @ W_ih^T for every step and both directions: one GEMM, done by the caller
w_hh    (D, G, H)
bias    (D, G)       b_ih + b_hh in the accumulation dtype, added in-kernel
h0, c0, h_n, c_n     (D, B, H)
out     (T, B, D*H)  x layout
gates   (T, B, D*G)  saved activations i, f, g, o (input dtype), x layout
hs      (S, B, D*H)  h carried after each step (input dtype), time-major; also the h exchange buffer
cs      (S, B, D*H)  c carried after each step (accumulation dtype), time-major
dgates  (T, B, D*G)  gradient of the gate pre-activations (= gradient of xproj), x layout
Slots: direction 0 reads slot t and writes slot t+1, direction 1 reads t+1 and writes t, so h0 sits in
slot 0 (d = 0) / slot T (d = 1) and h_{t-1} of every step of direction d is hs[d : d+T], one strided
view: what dW_hh = sum_t dgates_t^T h_prev_t needs, with no shifting or masking.

Design
------
Only h_{t-1} @ W_hh^T is sequential. For CRNN's H = 256 one direction's W_hh is 4H x H = 256 K elements,
512 KB in fp16: more than one SM holds (<= 228 KB shared memory, 256 KB registers). So the gate rows
are split over the NSPLIT programs of a group, each owning BH hidden units *with all four of their
gates* (4 tiles of BH x HP), so that the cell update stays local. Program j of a group computes per step

    pre_g^T (BH, BB) = W_hh[g*H + j*BH : ..., :] (BH, HP) @ h_{t-1}^T (HP, BB) + xproj_t^T + bias,  g = i, f, g, o

and keeps c of its units in registers for all T steps. Its W_hh tiles are loaded once, before the time
loop, and stay on chip: in the sm_90 build the compiler puts them in shared memory (hoisted out of the
loop) and each step's dots read them from there, since one warp's register copy of a 4 x 32 x 256 slice
alone would take the whole register file. BH is the largest power of two whose slice is <= 64 KB
(fp16/bf16 H = 256: BH = 32, NSPLIT = 8, so 16 programs per batch tile for both directions; fp32:
BH = 16, NSPLIT = 16); hence H <= 512 in fp16/bf16, 256 in fp32, 128 in fp64 (max_hidden_size).
Weight-stationary dots (M = BH, N = BB) let a small batch run with N = 16. Shared memory per program:
the W slice plus the step's h tile (HP x BB) forward, plus the four gate-gradient tiles (4 x HP x BB,
capped at 128 KB, which caps BB) backward; every default plan of the CRNN sizes is <= 196 KB of sm_90's
227 KB (tests/triton/test_lstm_compile_sm90.py compiles them ahead of time).

Grid sync: the new h of every unit is needed by every program of the group at the next step, so h_t
goes through global memory (the hs buffer, L2-resident; loaded with .cg to bypass the non-coherent L1)
and the group meets at a per-step barrier: one int32 counter per group, bumped once per program and
step (atomic acq_rel at gpu scope, after a CTA barrier) and spun on (atomic acquire) until it reaches
(steps done) x NSPLIT. The slot double-buffering (a step reads slot r and writes slot w != r) makes one
barrier per step enough. A spin barrier is only valid when every program of a group is resident at
once, so the launcher keeps each launch's grid <= the SM count (one program per SM always fits),
splitting a large batch over several launches; when not even one group fits, it falls back to one
launch per step (the kernel boundary is the barrier). With NSPLIT = 1 (small H: one program holds all
of W_hh) no grid sync is needed and the kernel is the same code with the GRID_SYNC constexpr off. Both
directions run in the same launch (grid axis 1).

Backward: the mirror image. Program j keeps the *columns* W_hh[:, j*BH : ...] on chip (4 tiles of
BH x HP, transposed), reads the gate gradients of all units of the step processed just before from
the dgates buffer (the exchange, behind the same barrier), forms dh for its units, and keeps dc in
registers. The gradient of h0 needs the last step's gate gradients of all units, so it is one more
(masked) loop iteration after a barrier, not code after the loop: code after the loop that reuses the W
tiles made the compiler keep a register copy of them live across the loop (~1 KB/thread of spills).
Weight gradients are large GEMMs over all steps after the kernel: dW_hh = dgates^T h_prev (one GEMM
per direction), db = column sums; dx and dW_ih come from autograd of the caller's input-projection GEMM.

Precision: dots in the input dtype with float32 accumulation (float32 inputs use TF32 only when
torch.backends.cuda.matmul.allow_tf32 is set, as torch's matmul does); gate math, c and the bias in
float32 (float64 for float64 input); h rounded to the input dtype where it feeds the next dot, as
cuDNN does. Saved gates are in the input dtype, saved c in the accumulation dtype.

CPU testing (TRITON_INTERPRET=1): the interpreter runs programs one after another, so a spin barrier
between programs would deadlock. The CPU tests run NSPLIT = 1 (with the grid-sync code on, where it
is a real but immediately satisfied spin) and NSPLIT > 1 in per-step mode (the same kernel, one launch
per step), so every line of the kernels but the wait for *other* programs runs on the CPU. The
interpreter's tl.dot multiplies the raw bits of bfloat16, so there bfloat16 dots are upcast to
float32 (DOT_F32; off on the GPU).

To tune on the GPU (lstm_config() overrides the heuristics; `benchmarks/bench_lstm.py --tune` sweeps
them): BH, BB and num_warps per (H, dtype, B) — the defaults come from sm_90 register/shared-memory
reports, not timings; BH = 32 gives M = 32 dots (mma.sync), BH = 64 with 4 warps gets wgmma but
fewer, larger programs; float32 without TF32 runs its dots on FMA units (slow, a few hundred bytes of
spills per thread: not a speed target); on Hopper a thread-block cluster exchanging h through
distributed shared memory instead of L2 + atomics would cut the per-step barrier latency (no
portable cluster API in Triton 3.6; that is the CUDA C++ kernel's job).
"""

import contextlib
import dataclasses

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

try:
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # pragma: no cover - very old triton
    InterpretedFunction = ()


# ---------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # 1 - 2 / (e^2x + 1) saturates to +-1 without inf/inf (e^2x -> inf gives 1, e^2x -> 0 gives -1).
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _mm(a, b, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    if DOT_F32:  # interpreter only: its bfloat16 dot is wrong
        res = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        res = tl.dot(a, b, input_precision=PRECISION)
    return res


@triton.jit
def _load_w_tile(w_ptr, d, gate: tl.constexpr, u0, H, stride_u, stride_k, BH: tl.constexpr, HP: tl.constexpr):
    """tile[u, k] of gate `gate` of w_hh[d]: its rows of units u0 + u (forward: strides (H, 1)) or its
    columns (backward: strides (1, H)). Zero outside H, so the padded dots add nothing."""
    u = u0 + tl.arange(0, BH)
    k = tl.arange(0, HP)
    base = w_ptr + (d * 4 + gate).to(tl.int64) * H * H
    return tl.load(base + u[:, None] * stride_u + k[None, :] * stride_k,
                   mask=(u[:, None] < H) & (k[None, :] < H), other=0.0)


@triton.jit
def _load_t(ptr, rows, cols, col_ok, row_ok, CACHE: tl.constexpr = ""):
    """Transposed tile: tile[c, b] = ptr[rows[b] + cols[c]] (rows (BB,) int64 row offsets, cols (R,))."""
    return tl.load(ptr + rows[None, :] + cols[:, None], mask=col_ok[:, None] & row_ok[None, :], other=0.0,
                   cache_modifier=CACHE)


@triton.jit
def _store_t(ptr, rows, cols, col_ok, row_ok, value):
    tl.store(ptr + rows[None, :] + cols[:, None], value.to(ptr.dtype.element_ty),
             mask=col_ok[:, None] & row_ok[None, :])


@triton.jit
def _load_gates(ptr, rows, feat, H, units, u_ok, row_ok):
    """The four gate tiles (BH, BB) of this program's units from a (·, D*G) buffer, direction offset feat."""
    g_i = _load_t(ptr, rows, feat + units, u_ok, row_ok)
    g_f = _load_t(ptr, rows, feat + H + units, u_ok, row_ok)
    g_g = _load_t(ptr, rows, feat + 2 * H + units, u_ok, row_ok)
    g_o = _load_t(ptr, rows, feat + 3 * H + units, u_ok, row_ok)
    return g_i, g_f, g_g, g_o


@triton.jit
def _store_gates(ptr, rows, feat, H, units, u_ok, row_ok, g_i, g_f, g_g, g_o):
    _store_t(ptr, rows, feat + units, u_ok, row_ok, g_i)
    _store_t(ptr, rows, feat + H + units, u_ok, row_ok, g_f)
    _store_t(ptr, rows, feat + 2 * H + units, u_ok, row_ok, g_g)
    _store_t(ptr, rows, feat + 3 * H + units, u_ok, row_ok, g_o)


@triton.jit
def _group_barrier(counter_ptr, target, GRID_SYNC: tl.constexpr):
    """Wait until every program of the group has finished this step's stores.

    GRID_SYNC: the group's programs meet on an atomic counter (all must be co-resident); else this
    program is the whole group and a CTA barrier orders its threads' stores before the next loads."""
    tl.debug_barrier()
    if GRID_SYNC:
        seen = tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu") + 1
        while seen < target:
            seen = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()


@triton.jit
def _lstm_fwd_kernel(
    xproj_ptr, sx_t, sx_b,      # (T, B, D*G); gates_ptr shares these strides
    w_ptr,                      # (D, G, H)
    bias_ptr,                   # (D, G) accumulation dtype
    len_ptr,                    # (B,) int64
    hs_ptr, shs_s, shs_b,       # (S, B, D*H); cs_ptr shares these strides
    c_in_ptr, c_out_ptr,        # (D, B, H), may alias (per-step mode)
    hn_ptr,                     # (D, B, H)
    out_ptr, so_t, so_b,        # (T, B, D*H)
    gates_ptr, cs_ptr,          # written when SAVE
    counter_ptr,                # (tiles * D,) int32 zeros, when GRID_SYNC
    T, B, H, NSLOT, s_begin, s_end, b_start,
    BH: tl.constexpr, BB: tl.constexpr, HP: tl.constexpr, NSPLIT: tl.constexpr,
    GRID_SYNC: tl.constexpr, SAVE: tl.constexpr, HAS_BIAS: tl.constexpr, ACC_F64: tl.constexpr,
    DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):
    """Steps s_begin..s_end-1 of one layer. Grid (NSPLIT, D, batch tiles)."""
    j = tl.program_id(0)
    d = tl.program_id(1)
    bt = tl.program_id(2)
    D = tl.num_programs(1)
    u0 = j * BH
    units = u0 + tl.arange(0, BH)
    u_ok = units < H
    k = tl.arange(0, HP)
    k_ok = k < H
    bb = b_start + bt * BB + tl.arange(0, BB)
    b_ok = bb < B
    bb64 = bb.to(tl.int64)
    length = tl.load(len_ptr + bb, mask=b_ok, other=0)
    feat_h = d * H          # this direction's columns in (·, D*H) buffers
    feat_g = d * 4 * H      # ... and in (·, D*G) buffers

    if ACC_F64:
        c = _load_t(c_in_ptr + d * B * H, bb64 * H, units, u_ok, b_ok).to(tl.float64)
    else:
        c = _load_t(c_in_ptr + d * B * H, bb64 * H, units, u_ok, b_ok).to(tl.float32)
    t0 = s_begin + d * (T - 1 - 2 * s_begin)
    # This program's units of h, as fed to the dots (input dtype), carried through masked steps.
    h_own = _load_t(hs_ptr, ((t0 + d) % NSLOT).to(tl.int64) * shs_s + bb64 * shs_b, feat_h + units, u_ok, b_ok)

    w_i = _load_w_tile(w_ptr, d, 0, u0, H, H, 1, BH, HP)
    w_f = _load_w_tile(w_ptr, d, 1, u0, H, H, 1, BH, HP)
    w_g = _load_w_tile(w_ptr, d, 2, u0, H, H, 1, BH, HP)
    w_o = _load_w_tile(w_ptr, d, 3, u0, H, H, 1, BH, HP)
    if HAS_BIAS:
        b_i = tl.load(bias_ptr + feat_g + units, mask=u_ok, other=0.0)[:, None]
        b_f = tl.load(bias_ptr + feat_g + H + units, mask=u_ok, other=0.0)[:, None]
        b_g = tl.load(bias_ptr + feat_g + 2 * H + units, mask=u_ok, other=0.0)[:, None]
        b_o = tl.load(bias_ptr + feat_g + 3 * H + units, mask=u_ok, other=0.0)[:, None]
    else:
        b_i = 0.0
        b_f = 0.0
        b_g = 0.0
        b_o = 0.0

    x_i, x_f, x_g, x_o = _load_gates(xproj_ptr, t0.to(tl.int64) * sx_t + bb64 * sx_b, feat_g, H, units, u_ok,
                                     b_ok & (s_begin < s_end))
    for s in range(s_begin, s_end):
        t = s + d * (T - 1 - 2 * s)
        t64 = t.to(tl.int64)
        r_rows = ((t + d) % NSLOT).to(tl.int64) * shs_s + bb64 * shs_b
        w_rows = ((t + 1 - d) % NSLOT).to(tl.int64) * shs_s + bb64 * shs_b
        h_t = _load_t(hs_ptr, r_rows, feat_h + k, k_ok, b_ok, ".cg")  # h_{t-1}^T (HP, BB), all units
        pre_i = _mm(w_i, h_t, DOT_F32, PRECISION) + x_i.to(c.dtype) + b_i
        pre_f = _mm(w_f, h_t, DOT_F32, PRECISION) + x_f.to(c.dtype) + b_f
        pre_g = _mm(w_g, h_t, DOT_F32, PRECISION) + x_g.to(c.dtype) + b_g
        pre_o = _mm(w_o, h_t, DOT_F32, PRECISION) + x_o.to(c.dtype) + b_o
        g_i = _sigmoid(pre_i)
        g_f = _sigmoid(pre_f)
        g_g = _tanh(pre_g)
        g_o = _sigmoid(pre_o)
        c_new = g_f * c + g_i * g_g
        h_new = g_o * _tanh(c_new)
        # Steps past a sequence's length output zeros and keep the state (PackedSequence semantics).
        valid = (b_ok & (t < length))[None, :]
        c = tl.where(valid, c_new, c)
        h_own = tl.where(valid, h_new.to(h_own.dtype), h_own)

        # Next step's input projection: its load latency hides behind the exchange below.
        s_n = s + 1
        t_n = s_n + d * (T - 1 - 2 * s_n)
        x_i, x_f, x_g, x_o = _load_gates(xproj_ptr, t_n.to(tl.int64) * sx_t + bb64 * sx_b, feat_g, H, units,
                                         u_ok, b_ok & (s_n < s_end))

        _store_t(out_ptr, t64 * so_t + bb64 * so_b, feat_h + units, u_ok, b_ok, tl.where(valid, h_new, 0.0))
        _store_t(hs_ptr, w_rows, feat_h + units, u_ok, b_ok, h_own)
        if SAVE:
            _store_gates(gates_ptr, t64 * sx_t + bb64 * sx_b, feat_g, H, units, u_ok, b_ok, g_i, g_f, g_g, g_o)
            _store_t(cs_ptr, w_rows, feat_h + units, u_ok, b_ok, c)
        _group_barrier(counter_ptr + (b_start // BB + bt) * D + d, (s - s_begin + 1) * NSPLIT, GRID_SYNC)

    _store_t(c_out_ptr + d * B * H, bb64 * H, units, u_ok, b_ok, c)
    _store_t(hn_ptr + d * B * H, bb64 * H, units, u_ok, b_ok, h_own)


@triton.jit
def _recurrent_grad(dh, wt_i, wt_f, wt_g, wt_o, dgates_ptr, sg_t, sg_b, bb64, row_ok, t_prev, feat_g, H, k, k_ok,
                    DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    """dh of this program's units from the gate gradients of step t_prev (all units): W_hh[:, units]^T dgates.

    Rows not in row_ok (no such step, or past the sequence's length: the state passed through unchanged)
    keep dh."""
    rows = t_prev.to(tl.int64) * sg_t + bb64 * sg_b
    dg_i = _load_t(dgates_ptr, rows, feat_g + k, k_ok, row_ok, ".cg")
    dg_f = _load_t(dgates_ptr, rows, feat_g + H + k, k_ok, row_ok, ".cg")
    dg_g = _load_t(dgates_ptr, rows, feat_g + 2 * H + k, k_ok, row_ok, ".cg")
    dg_o = _load_t(dgates_ptr, rows, feat_g + 3 * H + k, k_ok, row_ok, ".cg")
    if DOT_F32:
        dg_i = dg_i.to(tl.float32)
        dg_f = dg_f.to(tl.float32)
        dg_g = dg_g.to(tl.float32)
        dg_o = dg_o.to(tl.float32)
    rec = (_mm(wt_i, dg_i, DOT_F32, PRECISION) + _mm(wt_f, dg_f, DOT_F32, PRECISION)
           + _mm(wt_g, dg_g, DOT_F32, PRECISION) + _mm(wt_o, dg_o, DOT_F32, PRECISION))
    return tl.where(row_ok[None, :], rec.to(dh.dtype), dh)


@triton.jit
def _lstm_bwd_kernel(
    dout_ptr, sdo_t, sdo_b,     # (T, B, D*H) gradient of out, when HAS_DOUT
    w_ptr,                      # (D, G, H)
    len_ptr,                    # (B,) int64
    gates_ptr, sg_t, sg_b,      # (T, B, D*G) saved activations; dgates_ptr shares these strides
    dgates_ptr,                 # (T, B, D*G) out
    cs_ptr, scs_s, scs_b,       # (T+1, B, D*H) saved c
    dh_in_ptr, dc_in_ptr,       # (D, B, H) gradients of h_n, c_n (or the carried state, per-step mode)
    dh_out_ptr, dc_out_ptr,     # (D, B, H) gradients of h0, c0 (may alias the inputs, per-step mode)
    counter_ptr,
    T, B, H, s_begin, s_end, b_start, final,
    BH: tl.constexpr, BB: tl.constexpr, HP: tl.constexpr, NSPLIT: tl.constexpr,
    GRID_SYNC: tl.constexpr, HAS_DOUT: tl.constexpr, ACC_F64: tl.constexpr,
    DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):
    """Backward steps s_begin..s_end-1 (step s undoes forward time t = T-1-s for d = 0, t = s for d = 1), then,
    if `final` (0 or 1), the gradient of h0 from the last step's gate gradients (those of all units: after a
    barrier, so in per-step mode that is a launch of its own)."""
    j = tl.program_id(0)
    d = tl.program_id(1)
    bt = tl.program_id(2)
    D = tl.num_programs(1)
    u0 = j * BH
    units = u0 + tl.arange(0, BH)
    u_ok = units < H
    k = tl.arange(0, HP)
    k_ok = k < H
    bb = b_start + bt * BB + tl.arange(0, BB)
    b_ok = bb < B
    bb64 = bb.to(tl.int64)
    length = tl.load(len_ptr + bb, mask=b_ok, other=0)
    feat_h = d * H
    feat_g = d * 4 * H

    # Columns of W_hh for this program's units: wt_g[u, k] = w_hh[d, g*H + k, u0 + u].
    wt_i = _load_w_tile(w_ptr, d, 0, u0, H, 1, H, BH, HP)
    wt_f = _load_w_tile(w_ptr, d, 1, u0, H, 1, H, BH, HP)
    wt_g = _load_w_tile(w_ptr, d, 2, u0, H, 1, H, BH, HP)
    wt_o = _load_w_tile(w_ptr, d, 3, u0, H, 1, H, BH, HP)
    if DOT_F32:
        wt_i = wt_i.to(tl.float32)
        wt_f = wt_f.to(tl.float32)
        wt_g = wt_g.to(tl.float32)
        wt_o = wt_o.to(tl.float32)
    if ACC_F64:
        dh = _load_t(dh_in_ptr + d * B * H, bb64 * H, units, u_ok, b_ok).to(tl.float64)
        dc_carry = _load_t(dc_in_ptr + d * B * H, bb64 * H, units, u_ok, b_ok).to(tl.float64)
    else:
        dh = _load_t(dh_in_ptr + d * B * H, bb64 * H, units, u_ok, b_ok).to(tl.float32)
        dc_carry = _load_t(dc_in_ptr + d * B * H, bb64 * H, units, u_ok, b_ok).to(tl.float32)

    # `final` adds one iteration that only forms dh of h0 from the last step's gate gradients: inside the loop
    # rather than after it, so no register copy of the W tiles has to live across the loop.
    for s in range(s_begin, s_end + final):
        t = (T - 1 - s) + d * (2 * s - T + 1)
        t64 = t.to(tl.int64)
        # dh of the carried h after step t: from the gate gradients of step t+1 (d = 0) / t-1 (d = 1).
        t_prev = t + 1 - 2 * d
        dh = _recurrent_grad(dh, wt_i, wt_f, wt_g, wt_o, dgates_ptr, sg_t, sg_b, bb64,
                             b_ok & (t_prev < length) & (s > 0), t_prev, feat_g, H, k, k_ok, DOT_F32, PRECISION)
        active = b_ok & (s < s_end)
        valid = active & (t < length)
        g_rows = t64 * sg_t + bb64 * sg_b
        g_i, g_f, g_g, g_o = _load_gates(gates_ptr, g_rows, feat_g, H, units, u_ok, active)
        g_i = g_i.to(dh.dtype)
        g_f = g_f.to(dh.dtype)
        g_g = g_g.to(dh.dtype)
        g_o = g_o.to(dh.dtype)
        c_t = _load_t(cs_ptr, (t + 1 - d).to(tl.int64) * scs_s + bb64 * scs_b, feat_h + units, u_ok, active)
        c_p = _load_t(cs_ptr, (t + d).to(tl.int64) * scs_s + bb64 * scs_b, feat_h + units, u_ok, active)
        dh_t = dh
        if HAS_DOUT:
            dh_t += _load_t(dout_ptr, t64 * sdo_t + bb64 * sdo_b, feat_h + units, u_ok, valid).to(dh.dtype)
        tc = _tanh(c_t.to(dh.dtype))
        dc = dc_carry + dh_t * g_o * (1.0 - tc * tc)
        d_i = dc * g_g * g_i * (1.0 - g_i)
        d_f = dc * c_p.to(dh.dtype) * g_f * (1.0 - g_f)
        d_g = dc * g_i * (1.0 - g_g * g_g)
        d_o = dh_t * tc * g_o * (1.0 - g_o)
        v = valid[None, :]
        _store_gates(dgates_ptr, g_rows, feat_g, H, units, u_ok, active, tl.where(v, d_i, 0.0),
                     tl.where(v, d_f, 0.0), tl.where(v, d_g, 0.0), tl.where(v, d_o, 0.0))
        dc_carry = tl.where(v, dc * g_f, dc_carry)
        _group_barrier(counter_ptr + (b_start // BB + bt) * D + d, (s - s_begin + 1) * NSPLIT, GRID_SYNC)

    _store_t(dh_out_ptr + d * B * H, bb64 * H, units, u_ok, b_ok, dh)
    _store_t(dc_out_ptr + d * B * H, bb64 * H, units, u_ok, b_ok, dc_carry)


# ---------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------

INTERPRET = isinstance(_lstm_fwd_kernel, InterpretedFunction)
"""Whether the kernels run in the Triton interpreter (TRITON_INTERPRET=1 when this module was imported)."""

# Launch heuristics, from the sm_90 register/shared-memory reports of the compiled kernels (see the tests'
# ahead-of-time compile check); not yet timed on a GPU (benchmarks/bench_lstm.py is what should settle them).
W_SLICE_BYTES = 64 * 1024   # a program's W_hh slice (4 x BH x HP): in shared memory next to the exchange tiles
DG_TILE_BYTES = 128 * 1024  # the backward's 4 gate-gradient tiles (4 x HP x BB) per step, in shared memory
MIN_BLOCK = 16              # tl.dot needs every dimension >= 16
MODES = ("auto", "single", "grid_sync", "per_step")


@dataclasses.dataclass(frozen=True)
class LSTMKernelConfig:
    """Overrides of the launch heuristics (None / "auto": the heuristic decides).

    block_h: hidden units per program (BH); block_b: batch rows per program (BB); num_warps;
    mode: "single" (one launch, no grid sync: needs NSPLIT = 1), "grid_sync" (one launch per batch chunk,
        per-step barrier among a group's programs), "per_step" (one launch per step);
    sm_count: the co-residency limit to plan for (default: the device's multiprocessor count).
    """

    block_h: int | None = None
    block_b: int | None = None
    num_warps: int | None = None
    mode: str = "auto"
    sm_count: int | None = None


_config = LSTMKernelConfig()


@contextlib.contextmanager
def lstm_config(**overrides):
    """Override the launch heuristics inside a `with` block (tests, tuning sweeps). Under torch.compile the
    configuration at trace time is baked into the graph."""
    global _config
    previous = _config
    _config = dataclasses.replace(previous, **overrides)
    if _config.mode not in MODES:
        _config = previous
        raise ValueError(f"mode must be one of {MODES}, got {overrides.get('mode')!r}")
    try:
        yield _config
    finally:
        _config = previous


def max_hidden_size(dtype: torch.dtype) -> int:
    """The largest hidden size whose W_hh slice (BH = 16) fits on chip for `dtype`: 512 in fp16/bf16, 256 in
    fp32, 128 in fp64."""
    return W_SLICE_BYTES // (4 * MIN_BLOCK * dtype.itemsize)


def _pow2_at_least_16(value: int, name: str) -> int:
    if value < MIN_BLOCK or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {MIN_BLOCK}, got {value}")
    return value


_SM_COUNTS: dict = {}


def _sm_count(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNTS:
        _SM_COUNTS[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNTS[index]


@dataclasses.dataclass(frozen=True)
class _Plan:
    BH: int
    BB: int
    HP: int
    NSPLIT: int
    mode: str               # "single" | "grid_sync" | "per_step"
    tiles_per_launch: int   # batch tiles per launch (grid_sync keeps D * NSPLIT * tiles <= SMs)
    num_warps: int


def _plan(B: int, H: int, D: int, dtype: torch.dtype, device: torch.device, interpret: bool = INTERPRET) -> _Plan:
    """How to launch one layer: block sizes, launch mode, batch chunking, warps (interpret: plan for the
    Triton interpreter, which runs programs one after another)."""
    cfg = _config
    elt = dtype.itemsize
    if H > max_hidden_size(dtype):
        raise ValueError(f"hidden_size {H} is too large for the Triton LSTM kernels in {dtype} (at most "
                         f"{max_hidden_size(dtype)}: W_hh must stay on chip); use backend='torch'")
    HP = max(MIN_BLOCK, triton.next_power_of_2(H))
    if cfg.block_h is not None:
        BH = min(_pow2_at_least_16(cfg.block_h, "block_h"), HP)
    else:
        BH = HP  # the largest slice within budget: fewer programs per group, cheaper barriers
        while BH > MIN_BLOCK and 4 * BH * HP * elt > W_SLICE_BYTES:
            BH //= 2
    nsplit = triton.cdiv(H, BH)
    group = D * nsplit
    sms = cfg.sm_count
    if sms is None and device.type == "cuda" and not interpret:
        sms = _sm_count(device)
    mode = cfg.mode
    if mode == "auto":
        if nsplit == 1:
            mode = "single"
        elif sms is None or interpret or group > sms:
            mode = "per_step"
        else:
            mode = "grid_sync"
    if mode == "single" and nsplit > 1:
        raise ValueError(f"mode 'single' needs one program per direction (block_h >= {H}), got block_h={BH}")
    if mode == "grid_sync":
        if interpret and nsplit > 1:
            raise ValueError("mode 'grid_sync' with several programs per group would deadlock in the Triton "
                             "interpreter (it runs programs one after another); use 'per_step'")
        if sms is not None and group > sms:
            raise ValueError(f"mode 'grid_sync' needs {group} co-resident programs, the device has {sms} SMs")
    if cfg.block_b is not None:
        BB = _pow2_at_least_16(cfg.block_b, "block_b")
    else:
        # Enough batch tiles to occupy the SMs, within the backward's shared memory and (4/8-byte dtypes,
        # whose fp32/fp64 dots run on FMA units) the registers, and >= 16 rows (tl.dot).
        bb_max = 64 if elt <= 2 else MIN_BLOCK
        while bb_max > MIN_BLOCK and 4 * HP * bb_max * elt > DG_TILE_BYTES:
            bb_max //= 2
        slots = max(1, sms // group) if sms else 1
        BB = min(bb_max, max(MIN_BLOCK, triton.next_power_of_2(triton.cdiv(B, slots))))
    tiles = triton.cdiv(B, BB)
    tiles_per_launch = tiles
    if mode == "grid_sync" and sms is not None:
        tiles_per_launch = max(1, min(tiles, sms // group))
    if cfg.num_warps is not None:
        num_warps = cfg.num_warps
    else:
        num_warps = 8 if (elt >= 4 or BB >= 32) and BH * HP >= 16 * 256 else 4
    return _Plan(BH, BB, HP, nsplit, mode, tiles_per_launch, num_warps)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def _tb_strides(t: torch.Tensor, batch_first: bool) -> tuple:
    """(stride over time, stride over batch) of a (T, B, ·) / (B, T, ·) tensor."""
    return (t.stride(1), t.stride(0)) if batch_first else (t.stride(0), t.stride(1))


_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _expect(cond, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _check_state(t, name, shape, dtype, device) -> None:
    _expect(isinstance(t, torch.Tensor) and tuple(t.shape) == shape,
            f"{name} must be a tensor of shape {shape}, got {tuple(t.shape) if isinstance(t, torch.Tensor) else t}")
    _expect(t.dtype == dtype and t.device == device, f"{name} must be {dtype} on {device}, got {t.dtype} on {t.device}")


def _fwd_shapes(xproj: torch.Tensor, w_hh: torch.Tensor, batch_first: bool):
    """(T, B, D, H) of the forward op's arguments. Checks their shapes, dtypes and devices (no host sync:
    lengths' values are not checked; out-of-range ones only mark every step valid or none)."""
    _expect(w_hh.dim() == 3 and w_hh.shape[0] in (1, 2) and w_hh.shape[1] == 4 * w_hh.shape[2],
            f"w_hh must have shape (D, 4H, H) with D 1 or 2, got {tuple(w_hh.shape)}")
    D, _, H = w_hh.shape
    _expect(xproj.dim() == 3 and xproj.shape[2] == D * 4 * H,
            f"xproj must have shape ({'B, T' if batch_first else 'T, B'}, {D * 4 * H}) for w_hh of shape "
            f"{tuple(w_hh.shape)}, got {tuple(xproj.shape)}")
    _expect(xproj.dtype in _KERNEL_DTYPES, f"xproj must be float16, bfloat16, float32 or float64, got {xproj.dtype}")
    _expect(w_hh.dtype == xproj.dtype and w_hh.device == xproj.device,
            f"w_hh must be {xproj.dtype} on {xproj.device}, got {w_hh.dtype} on {w_hh.device}")
    T, B = (xproj.shape[1], xproj.shape[0]) if batch_first else (xproj.shape[0], xproj.shape[1])
    return T, B, D, H


def _check_fwd_args(xproj, w_hh, bias, h0, c0, lengths, batch_first):
    T, B, D, H = _fwd_shapes(xproj, w_hh, batch_first)
    if bias is not None:
        _check_state(bias, "bias", (D, 4 * H), _acc_dtype(xproj.dtype), xproj.device)
    _check_state(h0, "h0", (D, B, H), xproj.dtype, xproj.device)
    _check_state(c0, "c0", (D, B, H), xproj.dtype, xproj.device)
    _expect(tuple(lengths.shape) == (B,) and lengths.dtype in (torch.int32, torch.int64)
            and lengths.device == xproj.device,
            f"lengths must be int32/int64 of shape ({B},) on {xproj.device}, got {lengths.dtype} of shape "
            f"{tuple(lengths.shape)} on {lengths.device}")
    return T, B, D, H


def lstm_recurrence_fwd_fake(xproj: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor | None,
                             h0: torch.Tensor, c0: torch.Tensor, lengths: torch.Tensor, batch_first: bool,
                             save: bool) -> tuple:
    """The outputs of lstm_recurrence_fwd, allocated (its fake implementation)."""
    T, B, D, H = _check_fwd_args(xproj, w_hh, bias, h0, c0, lengths, batch_first)
    out = xproj.new_empty((B, T, D * H) if batch_first else (T, B, D * H))
    h_n, c_n = h0.new_empty((D, B, H)), h0.new_empty((D, B, H))
    if save:
        gates = xproj.new_empty(xproj.shape)
        hs = xproj.new_empty((T + 1, B, D * H))
        cs = xproj.new_empty((T + 1, B, D * H), dtype=_acc_dtype(xproj.dtype))
    else:  # three distinct tensors: a custom op's outputs must not alias each other
        gates, hs, cs = (xproj.new_empty((0,)) for _ in range(3))
    return out, h_n, c_n, gates, hs, cs


def lstm_recurrence_fwd(xproj: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor | None, h0: torch.Tensor,
                        c0: torch.Tensor, lengths: torch.Tensor, batch_first: bool,
                        save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                             torch.Tensor]:
    """The recurrence of one layer, both directions.

    xproj: (T, B, D*4H) (or (B, T, D*4H) with batch_first) contiguous, the input projection without bias;
    w_hh: (D, 4H, H); bias: (D, 4H) in the accumulation dtype, or None; h0, c0: (D, B, H); lengths: (B,) int64
    with values in [0, T] (not checked here: no host sync). save: also return what backward needs.
    Returns out (T, B, D*H) (x layout), h_n, c_n (D, B, H), and gates, hs, cs (empty unless save).
    """
    xproj, w_hh, h0, c0 = xproj.contiguous(), w_hh.contiguous(), h0.contiguous(), c0.contiguous()
    bias = bias.contiguous() if bias is not None else None
    out, h_n, c_n, gates, hs, cs = lstm_recurrence_fwd_fake(xproj, w_hh, bias, h0, c0, lengths, batch_first, save)
    T, B, D, H = _fwd_shapes(xproj, w_hh, batch_first)
    dtype, acc = xproj.dtype, _acc_dtype(xproj.dtype)
    plan = _plan(B, H, D, dtype, xproj.device)
    nslot = T + 1 if save else 2
    empty_hs = hs
    if not save:  # a ping-pong exchange buffer, not returned
        hs = xproj.new_empty((nslot, B, D * H))
    # The initial state's slots: 0 for the forward direction, T for the reverse one.
    hs4 = hs.view(nslot, B, D, H)
    hs4[0, :, 0].copy_(h0[0])
    if D == 2:
        hs4[T % nslot, :, 1].copy_(h0[1])
    if save:
        cs4 = cs.view(nslot, B, D, H)
        cs4[0, :, 0].copy_(c0[0])
        if D == 2:
            cs4[T % nslot, :, 1].copy_(c0[1])
    sx_t, sx_b = _tb_strides(xproj, batch_first)
    so_t, so_b = _tb_strides(out, batch_first)
    bias_arg = bias if bias is not None else hs  # never read without HAS_BIAS
    dot_f32 = INTERPRET and dtype == torch.bfloat16
    tiles = triton.cdiv(B, plan.BB)
    counter = torch.zeros(tiles * D if plan.mode == "grid_sync" else 1, dtype=torch.int32, device=xproj.device)

    def launch(b_start, n_tiles, s_begin, s_end, c_in, c_out):
        wrap_triton(_lstm_fwd_kernel)[(plan.NSPLIT, D, n_tiles)](
            xproj, sx_t, sx_b, w_hh, bias_arg, lengths, hs, hs.stride(0), hs.stride(1), c_in, c_out, h_n,
            out, so_t, so_b, gates, cs, counter, T, B, H, nslot, s_begin, s_end, b_start,
            BH=plan.BH, BB=plan.BB, HP=plan.HP, NSPLIT=plan.NSPLIT,
            GRID_SYNC=plan.mode == "grid_sync", SAVE=save, HAS_BIAS=bias is not None, ACC_F64=acc == torch.float64,
            DOT_F32=dot_f32, PRECISION=_precision(dtype), num_warps=plan.num_warps, num_stages=1)

    if plan.mode == "per_step":
        c_state = c0.to(acc, copy=True)  # c carried between launches at full precision
        for s in range(T):
            launch(0, tiles, s, s + 1, c_state, c_state)
        c_n.copy_(c_state)
    else:
        chunk = plan.tiles_per_launch * plan.BB
        for b_start in range(0, B, chunk):
            launch(b_start, triton.cdiv(min(chunk, B - b_start), plan.BB), 0, T, c0, c_n)
    return out, h_n, c_n, gates, hs if save else empty_hs, cs


def lstm_recurrence_bwd_fake(dout: torch.Tensor | None, dh_n: torch.Tensor | None,
                             dc_n: torch.Tensor | None, w_hh: torch.Tensor, gates: torch.Tensor,
                             cs: torch.Tensor, lengths: torch.Tensor, batch_first: bool) -> tuple:
    T, B, D, H = _fwd_shapes(gates, w_hh, batch_first)
    _check_state(cs, "cs", (T + 1, B, D * H), _acc_dtype(gates.dtype), gates.device)
    for name, grad, shape in (("dout", dout, (B, T, D * H) if batch_first else (T, B, D * H)),
                              ("dh_n", dh_n, (D, B, H)), ("dc_n", dc_n, (D, B, H))):
        if grad is not None:
            _check_state(grad, name, shape, gates.dtype, gates.device)
    _expect(tuple(lengths.shape) == (B,), f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    return gates.new_empty(gates.shape), gates.new_empty((D, B, H)), gates.new_empty((D, B, H))


def lstm_recurrence_bwd(dout: torch.Tensor | None, dh_n: torch.Tensor | None, dc_n: torch.Tensor | None,
                        w_hh: torch.Tensor, gates: torch.Tensor, cs: torch.Tensor, lengths: torch.Tensor,
                        batch_first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BPTT of one layer's recurrence, both directions.

    dout: (T, B, D*H) (x layout) or None; dh_n, dc_n: (D, B, H) or None; gates, cs: saved by the forward.
    Returns dgates (T, B, D*4H) (x layout, = gradient of xproj), dh0, dc0 (D, B, H).
    """
    w_hh, gates, cs = w_hh.contiguous(), gates.contiguous(), cs.contiguous()
    dgates, dh0, dc0 = lstm_recurrence_bwd_fake(dout, dh_n, dc_n, w_hh, gates, cs, lengths, batch_first)
    D, _, H = w_hh.shape
    T, B = (gates.shape[1], gates.shape[0]) if batch_first else (gates.shape[0], gates.shape[1])
    dtype, acc = gates.dtype, _acc_dtype(gates.dtype)
    plan = _plan(B, H, D, dtype, gates.device)
    if dout is not None and dout.stride(-1) != 1:
        dout = dout.contiguous()
    sdo_t, sdo_b = _tb_strides(dout, batch_first) if dout is not None else (0, 0)
    sg_t, sg_b = _tb_strides(gates, batch_first)
    dh_in = dh_n.contiguous() if dh_n is not None else torch.zeros_like(dh0)
    dc_in = dc_n.contiguous() if dc_n is not None else torch.zeros_like(dc0)
    dot_f32 = INTERPRET and dtype == torch.bfloat16
    tiles = triton.cdiv(B, plan.BB)
    counter = torch.zeros(tiles * D if plan.mode == "grid_sync" else 1, dtype=torch.int32, device=gates.device)

    def launch(b_start, n_tiles, s_begin, s_end, final, dh_i, dc_i, dh_o, dc_o):
        wrap_triton(_lstm_bwd_kernel)[(plan.NSPLIT, D, n_tiles)](
            dout if dout is not None else gates, sdo_t, sdo_b, w_hh, lengths, gates, sg_t, sg_b, dgates,
            cs, cs.stride(0), cs.stride(1), dh_i, dc_i, dh_o, dc_o, counter, T, B, H, s_begin, s_end, b_start, final,
            BH=plan.BH, BB=plan.BB, HP=plan.HP, NSPLIT=plan.NSPLIT, GRID_SYNC=plan.mode == "grid_sync",
            HAS_DOUT=dout is not None, ACC_F64=acc == torch.float64, DOT_F32=dot_f32,
            PRECISION=_precision(dtype), num_warps=plan.num_warps, num_stages=1)

    if plan.mode == "per_step":
        dh_state, dc_state = dh_in.to(acc, copy=True), dc_in.to(acc, copy=True)
        for s in range(T):
            launch(0, tiles, s, s + 1, 0, dh_state, dc_state, dh_state, dc_state)
        launch(0, tiles, T, T, 1, dh_state, dc_state, dh_state, dc_state)  # dh0 needs every unit's last dgates
        dh0.copy_(dh_state)
        dc0.copy_(dc_state)
    else:
        chunk = plan.tiles_per_launch * plan.BB
        for b_start in range(0, B, chunk):
            launch(b_start, triton.cdiv(min(chunk, B - b_start), plan.BB), 0, T, 1, dh_in, dc_in, dh0, dc0)
    return dgates, dh0, dc0


# ---------------------------------------------------------------------------------------------------------
# Autograd: the weight gradients, as large GEMMs over all steps (the op registration is in crnn_fast.ops.lstm)
# ---------------------------------------------------------------------------------------------------------


def lstm_recurrence_weight_grads(dgates: torch.Tensor, hs: torch.Tensor, num_directions: int, batch_first: bool,
                                 need_w_hh: bool, need_bias: bool, bias_dtype: torch.dtype | None):
    """dW_hh (D, 4H, H) = per direction dgates^T @ h_prev over all (t, b); dbias (D, 4H) = column sums.

    dgates: (T, B, D*4H) x layout; hs: (T+1, B, D*H) time-major, so h_prev of direction d is hs[d : d+T].
    """
    T = dgates.shape[1] if batch_first else dgates.shape[0]
    D, DG = num_directions, dgates.shape[-1]
    flat = dgates.reshape(-1, DG)  # rows in memory order: a view
    dw_hh = dbias = None
    if need_bias:
        dbias = flat.sum(0, dtype=bias_dtype).view(D, DG // D)
    if need_w_hh:
        G, H = DG // D, DG // (4 * D)
        grads = []
        for d in range(D):
            h_prev = hs[d : d + T, :, d * H : (d + 1) * H]  # (T, B, H)
            if batch_first:
                h_prev = h_prev.transpose(0, 1)  # rows in dgates' (B, T) order; the reshape copies
            grads.append(flat[:, d * G : (d + 1) * G].t() @ h_prev.reshape(-1, H))
        dw_hh = torch.stack(grads)
    return dw_hh, dbias
