"""Training a CRNN with CTC on synthetic (or folder / LMDB) data: `crnn-fast train`.

Synthetic data is rendered from the installed fonts and text corpus: install them first with
`sudo bash scripts/install_training_data.sh` (Debian font packages, fortunes, dict-gcide, ...; see
crnn_fast.data.fonts and crnn_fast.data.corpus). On the CPU, `--amp` (bf16 autocast) with `--threads 2` and one
data worker keeps both cores of a 2-core machine training.

One run writes into its output folder:
    config.json       the TrainConfig it ran with
    last.pt           the latest checkpoint (model, optimizer, scheduler, step, RNG states); resumed from
    best.pt           the checkpoint with the best validation exact match so far
    metrics.jsonl     one JSON object per log line: {"step", "loss", "lr", "images_per_s", ...} and
                      {"step", "val_exact", "val_cer", ...} after each validation
    model.safetensors + model.json   the exported best model (export())

Under `torchrun --nproc-per-node N crnn-fast train ...` the N processes train one model with
DistributedDataParallel (crnn_fast.distributed): batch_size stays the GLOBAL batch, each process trains on
its batch_size / N rows of it, and a step equals the step one process would take on the whole batch (up to
floating-point order). Rank 0 alone writes the files above and shows progress; "loss" and "images_per_s"
in metrics.jsonl are over all processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import resolve_device
from .data.charset import Charset
from .data.synth import RenderConfig, SynthDataset, SynthGenerator
from .distributed import (
    DistributedContext,
    convert_batchnorm,
    init_distributed,
    shard_size,
    shutdown_distributed,
    wrap_model,
)
from .evaluate import compute_metrics
from .formats.image_batch import Batch, pad_batch, widen_batch
from .models.crnn import CRNN, CRNN_CONFIGS, CRNNConfig
from .models.pretrained import save_pretrained

CHARSETS = {"printable_ascii": Charset.printable_ascii, "alphanumeric_lower": Charset.alphanumeric_lower}


@dataclass
class TrainConfig:
    out_dir: str = "runs/crnn"
    variant: str = "small"                 # a CRNN_CONFIGS key, or "custom" with channels + lstm_hidden
    channels: tuple[int, ...] | None = None
    lstm_hidden: int | None = None
    charset: str = "printable_ascii"
    steps: int = 10000
    batch_size: int = 32                   # the global batch: under torchrun each process takes batch_size / N
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"            # "onecycle" | "cosine" | "constant"
    warmup: float = 0.05                   # fraction of steps (onecycle pct_start / cosine warmup)
    clip_grad: float = 5.0
    amp: bool = False                      # bf16 autocast on CPU, fp16 + GradScaler on CUDA
    channels_last: bool = True             # NHWC convolutions: ~1.3x images/s on the CPU (bench_train_cpu.py)
    device: str = "auto"
    threads: int = 1                       # torch.set_num_threads in each training process
    num_workers: int = 1                   # data workers (0: generate in the training process)
    seed: int = 0
    degraded_prob: float = 0.5
    curriculum_steps: int = 0              # ramp degraded_prob from 0 over these steps
    mix: dict | None = None                # text kinds -> weights (synth.DEFAULT_MIX)
    max_line_chars: int = 100
    max_width: int = 1600
    train_data: str | None = None          # a folder with labels.tsv or an LMDB instead of synthetic data
    val_size: int = 512
    val_every: int = 500
    ckpt_every: int = 250
    log_every: int = 25
    progress: bool = True
    # Train for this much wall time instead of a fixed number of steps: the learning rate follows warmup +
    # cosine over the fraction of the budget used, and training stops when it is spent (steps is a cap).
    time_budget_s: float | None = None
    # Start from these weights (a run's .pt checkpoint, or a model name/path for load_pretrained) with a fresh
    # optimizer and schedule: fine-tuning, or continuing the shipped model. Ignored when resuming a run.
    init_from: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str, **overrides) -> TrainConfig:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)

    def model_config(self) -> str | CRNNConfig:
        if self.channels is not None or self.lstm_hidden is not None:
            base = CRNN_CONFIGS.get(self.variant, CRNN_CONFIGS["small"])
            return CRNNConfig(channels=tuple(self.channels or base.channels),
                              lstm_hidden=self.lstm_hidden or base.lstm_hidden)
        if self.variant not in CRNN_CONFIGS:
            raise ValueError(f"variant must be one of {list(CRNN_CONFIGS)} (or give channels/lstm_hidden), "
                             f"got {self.variant!r}")
        return self.variant


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 convolutions and matmuls on this CPU (AVX-512 or newer). Without them, bf16
    autocast falls back to unblocked reference kernels: measured ~7x slower per training step than fp32 on an
    AVX2-only EPYC."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")


def build_model(config: TrainConfig, charset: Charset) -> CRNN:
    return CRNN(charset.num_classes, variant=config.model_config())


def make_scheduler(optimizer, config: TrainConfig):
    if config.time_budget_s:  # the training loop sets the learning rate from the time used
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=min(0.5, max(config.warmup, 2.5 / config.steps)),
                                                   anneal_strategy="cos",
                                                   div_factor=10.0, final_div_factor=100.0)
    if config.schedule == "cosine":
        warm = max(1, int(config.warmup * config.steps))

        def factor(step):
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, config.steps - warm)
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'constant', got {config.schedule!r}")


def ctc_loss(model: CRNN, batch: Batch, charset: Charset, device, amp: bool) -> torch.Tensor:
    """Mean CTC loss of a batch (per target character, as F.ctc_loss(reduction='mean')). `model` may be the
    CRNN wrapped in DistributedDataParallel."""
    images = batch.images.to(device, non_blocking=True)
    targets, target_lengths = charset.encode_batch(batch.texts)
    autocast_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=amp):
        log_probs = model(images)  # (B, T, K)
    log_probs = log_probs.float().log_softmax(-1).transpose(0, 1)  # (T, B, K) for F.ctc_loss
    T, B = log_probs.shape[:2]
    input_lengths = torch.full((B,), T, dtype=torch.int64)
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=charset.blank,
                      reduction="mean", zero_infinity=True)


@torch.no_grad()
def greedy_texts(model: CRNN, images: torch.Tensor, charset: Charset) -> list[str]:
    from .ops import ctc_greedy

    log_probs = model(images).float().cpu()
    out = ctc_greedy(log_probs)
    tokens, lengths = out.tokens.tolist(), out.token_lengths.tolist()
    return [charset.decode(t[:n]) for t, n in zip(tokens, lengths)]


def make_val_set(config: TrainConfig, charset: Charset) -> list[Batch]:
    """A fixed validation set: fresh synthetic samples (train split, a seed training never uses)."""
    gen = SynthGenerator("train", charset=charset, mix=config.mix, max_line_chars=config.max_line_chars,
                         render=RenderConfig(degraded_prob=0.5, max_width=config.max_width))
    rng = random.Random(f"val/{config.seed}")
    samples = sorted((gen.sample(rng) for _ in range(config.val_size)), key=lambda s: s[0].shape[1])
    return [pad_batch([s[0] for s in samples[i:i + 64]], [s[1] for s in samples[i:i + 64]])
            for i in range(0, len(samples), 64)]


def validate(model: CRNN, val: list[Batch], charset: Charset, device) -> dict:
    was_training = model.training
    model.eval()
    preds, labels = [], []
    for batch in val:
        preds += greedy_texts(model, batch.images.to(device), charset)
        labels += batch.texts
    model.train(was_training)
    m = compute_metrics(preds, labels)
    return {"val_exact": m.exact, "val_alnum": m.alnum, "val_cer": m.cer, "val_n": m.n}


def _rng_state() -> dict:
    """The RNG states as tensors and plain types, so that a checkpoint loads with torch.load(weights_only=True)."""
    numpy_state = np.random.get_state(legacy=False)  # {"bit_generator", "state": {"key", "pos"}, "has_gauss", "gauss"}
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"bit_generator": numpy_state["bit_generator"],
                      "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                      "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                      "gauss": float(numpy_state["gauss"])}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = {"bit_generator": numpy_state["bit_generator"],
                       "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                       "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]}
    np.random.set_state(numpy_state)  # older checkpoints: the legacy tuple holding an ndarray


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded safely (not a checkpoint, damaged, or its pickle wants code)."""


def _old_numpy_rng_globals() -> list:
    """What the NumPy RNG state of checkpoints written before it was stored as a tensor needs: an ndarray of
    uint32. _reconstruct builds only an allowed subtype (ndarray), so nothing else can be constructed."""
    core = np._core if hasattr(np, "_core") else np.core
    reconstruct = core.multiarray._reconstruct
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
            type(np.dtype(np.uint32))]


def load_checkpoint(path, map_location="cpu") -> dict:
    """A training checkpoint, read with torch.load(weights_only=True): tensors and plain types only, so that a
    crafted file cannot run code. Raises CheckpointError naming the file and what it refers to."""
    import pickle

    try:
        with torch.serialization.safe_globals(_old_numpy_rng_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a zip checkpoint: the loader's own first line says what it refused
            unsafe = str(e).strip().splitlines()[-1:]
        raise CheckpointError(f"{str(path)!r} is not a checkpoint that loads safely: it refers to code or types a "
                              f"checkpoint does not hold ({', '.join(unsafe) or e}); it was not loaded") from None
    except (RuntimeError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{str(path)!r} is not a crnn_fast training checkpoint (no 'model' state_dict)")
    return ckpt


def _budget_factor(progress: float, warmup: float) -> float:
    """Learning-rate factor at `progress` (0..1) of a time budget: linear warmup, then cosine to 1%."""
    if progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    t = (progress - warmup) / max(1e-9, 1.0 - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _initial_weights(init_from: str, device) -> dict:
    if init_from.endswith(".pt"):
        return load_checkpoint(init_from, map_location=device)["model"]
    from .models.pretrained import load_pretrained

    model, _charset, _meta = load_pretrained(init_from, map_location=device)
    return model.state_dict()


def save_checkpoint(path: Path, model, optimizer, scheduler, scaler, step: int, config: TrainConfig,
                    best: float, elapsed: float = 0.0, world_size: int = 1) -> None:
    """model: the CRNN itself, not its DistributedDataParallel wrapper (whose keys start with `module.`)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "step": step, "elapsed": elapsed, "rng": _rng_state(), "config": dataclasses.asdict(config),
                "best": best, "world_size": world_size}, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _data_iter(config: TrainConfig, charset: Charset, start_step: int, dist_context: DistributedContext):
    """This process's batches: its shard of each global batch (all of it in a single process)."""
    rank, world_size = dist_context.rank, dist_context.world_size
    if config.train_data:
        from .data.datasets import open_dataset, padded_batches

        # Every process walks the same global batches and takes its rows of each.
        return padded_batches(open_dataset(config.train_data), config.batch_size, seed=config.seed,
                              start_batch=start_step, charset=charset, rank=rank, world_size=world_size)
    # Synthetic data has no global order to share: each process draws its own stream of shards.
    dataset = SynthDataset(shard_size(config.batch_size, world_size), seed=config.seed, charset=charset, mix=config.mix,
                           render=RenderConfig(degraded_prob=config.degraded_prob, max_width=config.max_width),
                           curriculum_batches=config.curriculum_steps, start_batch=start_step,
                           max_line_chars=config.max_line_chars, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=config.num_workers,
                                         persistent_workers=False, prefetch_factor=4 if config.num_workers else None,
                                         collate_fn=lambda b: b)
    return iter(loader)


def train(config: TrainConfig, *, resume: bool = True, stop_after: int | None = None) -> dict:
    """Train (or resume) per `config`; returns the last metrics record. stop_after: run at most this many
    steps in this call (the schedule still spans config.steps), e.g. to test resuming.

    Under torchrun every process calls train() with the same config: it joins the process group (and
    leaves it on return or error), and a CUDA device becomes cuda:LOCAL_RANK."""
    torch.set_num_threads(max(1, config.threads))
    dist_context = init_distributed(resolve_device(config.device))
    try:
        return _train(config, dist_context, resume=resume, stop_after=stop_after)
    finally:
        shutdown_distributed(dist_context)


def _train(config: TrainConfig, dist_context: DistributedContext, *, resume: bool, stop_after: int | None) -> dict:
    from tqdm import tqdm

    is_main, world_size = dist_context.is_main, dist_context.world_size
    shard_size(config.batch_size, world_size)  # fail early on a global batch that does not split evenly
    out = Path(config.out_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    device = dist_context.device
    charset = CHARSETS[config.charset]()
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    model = build_model(config, charset)
    if dist_context.enabled:  # normalise with the global batch's statistics, as one process would
        model = convert_batchnorm(model, device)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config)
    amp = config.amp
    if amp and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn(f"amp: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no fast bf16 kernels, under "
                      "which bf16 autocast runs several times slower than fp32; training in fp32", stacklevel=3)
        amp = False
    scaler = torch.amp.GradScaler("cuda") if (amp and device.type == "cuda") else None
    step, best, elapsed_before = 0, -1.0, 0.0
    last = out / "last.pt"
    # Rank 0 reads the checkpoint and hands it to the others: nodes need not share a file system. On the
    # CPU first: the RNG state must stay there, and rank 0's GPU tensors must not land on other ranks' GPU.
    ckpt = load_checkpoint(last) if resume and is_main and last.exists() else None
    ckpt = dist_context.broadcast_object(ckpt)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step, best = ckpt["step"], ckpt.get("best", -1.0)
        elapsed_before = ckpt.get("elapsed", 0.0)
        _set_rng_state(ckpt["rng"])
    elif config.init_from and is_main:  # the other processes get rank 0's weights when DDP wraps the model
        model.load_state_dict(_initial_weights(config.init_from, device))
    log = None
    if is_main:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
        log = open(out / "metrics.jsonl", "a")
    val = make_val_set(config, charset) if config.val_every > 0 and is_main else []
    data = _data_iter(config, charset, step, dist_context)
    end = config.steps if stop_after is None else min(config.steps, step + stop_after)
    bar = tqdm(total=config.steps, initial=step, disable=not (config.progress and is_main), unit="step",
               dynamic_ncols=True)
    model.train()
    # Forward and backward go through the DDP wrapper (it averages the gradients); the CRNN itself is what
    # gets validated and saved.
    train_model = wrap_model(model, dist_context)
    record: dict = {}
    t0, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
    start_time = time.time()
    budget = config.time_budget_s
    run_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - run_start

    while step < end:
        if budget:
            # The slowest process's clock: all processes stop at the same step with the same learning rate.
            progress = dist_context.max(elapsed()) / budget
            if progress >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _budget_factor(progress, config.warmup)
        batch = next(data)
        if dist_context.enabled:
            # One process pads the global batch to its widest image, and CTC runs over every frame that
            # padding makes: every shard must be that wide too.
            batch = widen_batch(batch, int(dist_context.max(batch.images.shape[-1])))
        if config.channels_last:
            batch = Batch(batch.images.contiguous(memory_format=torch.channels_last), batch.widths, batch.texts)
        loss = ctc_loss(train_model, batch, charset, device, amp)
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)  # DDP's averaged gradients
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if not budget:
            scheduler.step()
        step += 1
        seen += len(batch.texts) * world_size
        loss_sum, loss_n = loss_sum + loss.detach().item(), loss_n + 1
        bar.update(1)
        if step % config.log_every == 0 or step == end:
            # Equal shards: the mean of the processes' mean losses is the global batch's mean loss.
            loss_mean = dist_context.mean(loss_sum / loss_n)
            dt = time.perf_counter() - t0
            record = {"step": step, "loss": loss_mean, "lr": optimizer.param_groups[0]["lr"],
                      "images_per_s": seen / dt if dt > 0 else 0.0, "width": int(batch.images.shape[-1]),
                      "time": time.time()}
            bar.set_postfix(loss=f"{record['loss']:.3f}", ips=f"{record['images_per_s']:.0f}")
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            t0, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
        if val and (step % config.val_every == 0 or step == config.steps):
            vrec = {"step": step, **validate(model, val, charset, device), "time": time.time()}
            log.write(json.dumps(vrec) + "\n")
            log.flush()
            bar.write(f"step {step}: val exact {vrec['val_exact']:.3f} cer {vrec['val_cer']:.4f}")
            record.update(vrec)
            if vrec["val_exact"] > best:
                best = vrec["val_exact"]
                save_checkpoint(out / "best.pt", model, optimizer, scheduler, scaler, step, config, best,
                                elapsed(), world_size)
        if is_main and (step % config.ckpt_every == 0 or step == end):
            save_checkpoint(last, model, optimizer, scheduler, scaler, step, config, best, elapsed(), world_size)
    if budget and step % config.ckpt_every != 0 and is_main:  # stopped by the time budget: validate, save the end
        if val:
            vrec = {"step": step, **validate(model, val, charset, device), "time": time.time(), "final": True}
            log.write(json.dumps(vrec) + "\n")
            record.update(vrec)
            if vrec["val_exact"] > best:
                best = vrec["val_exact"]
                save_checkpoint(out / "best.pt", model, optimizer, scheduler, scaler, step, config, best, elapsed(),
                                world_size)
        save_checkpoint(last, model, optimizer, scheduler, scaler, step, config, best, elapsed(), world_size)
    bar.close()
    if log is not None:
        log.close()
    # Nobody returns before rank 0 has written the last checkpoint (a caller may export it next).
    dist_context.barrier()
    record["wall_s_this_call"] = time.time() - start_time
    return record


def export(run_dir: str, path: str, *, checkpoint: str = "best.pt", half: bool = False, notes: dict | None = None):
    """Export a run's checkpoint to `path`.safetensors + `path`.json (training details in the sidecar)."""
    ckpt_path = Path(run_dir) / checkpoint
    if not ckpt_path.exists():
        ckpt_path = Path(run_dir) / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    config = TrainConfig(**{k: v for k, v in ckpt["config"].items()
                            if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    charset = CHARSETS[config.charset]()
    model = build_model(config, charset)
    model.load_state_dict(ckpt["model"])
    training = {"checkpoint": ckpt_path.name, "step": ckpt["step"], "images_seen": ckpt["step"] * config.batch_size,
                "best_val_exact": ckpt.get("best"), "data": "crnn_fast.data.synth (train split)",
                "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out_dir", "progress")}}
    training.update(notes or {})
    return save_pretrained(model, charset, path, training=training, half=half)
