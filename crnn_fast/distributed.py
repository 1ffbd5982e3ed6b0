"""Data-parallel training over several processes started by torchrun (one per GPU, or CPU processes).

Dimensions: B the global batch (TrainConfig.batch_size), N = world_size processes, b = B / N the rows of
one process (its shard), C channels, H x W a feature map.

Under `torchrun --nproc-per-node N ...` every process finds WORLD_SIZE, RANK and LOCAL_RANK in its
environment; train() then joins a process group (NCCL on GPUs, gloo on CPUs), wraps the model in
DistributedDataParallel and trains each process on its shard of every global batch. A step of N processes
is the step one process would take on the whole global batch, up to floating-point order, because:
- every shard is padded to the global batch's widest image (the model emits W // 4 + 1 frames and CTC runs
  over all of them, so padding changes the loss);
- F.ctc_loss(reduction="mean") averages over a shard and DDP averages gradients over the N equal shards,
  which together is the mean over the global batch;
- batch normalisation uses the global batch's statistics: torch.nn.SyncBatchNorm on CUDA, which supports
  only GPUs, and GlobalBatchNorm2d below on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run; the single-process default is rank 0 of 1.

    device: this process's device (cuda:LOCAL_RANK on GPUs); collectives run on tensors there.
    owns_process_group: init_distributed() created the process group, so shutdown_distributed() ends it.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints and logs, validates and shows progress."""
        return self.rank == 0

    def _all_reduce(self, value: float, op) -> float:
        if not self.enabled:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=op)
        return float(tensor.item())

    def max(self, value: float) -> float:
        """The largest `value` over all processes (every process must call it)."""
        return self._all_reduce(value, dist.ReduceOp.MAX)

    def mean(self, value: float) -> float:
        """The mean of `value` over all processes (every process must call it)."""
        return self._all_reduce(value, dist.ReduceOp.SUM) / self.world_size

    def broadcast_object(self, obj):
        """Rank 0's `obj` (any picklable object) on every process."""
        if not self.enabled:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launch_env() -> tuple[int, int, int] | None:
    """(world_size, rank, local_rank) from the environment torchrun sets, or None outside torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return None
    values = []
    for name in LAUNCH_ENV:
        raw = os.environ.get(name)
        if raw is None:
            raise ValueError(f"environment variable {name} is not set but WORLD_SIZE is: start distributed "
                             f"training with torchrun, which sets {', '.join(LAUNCH_ENV)}")
        try:
            values.append(int(raw))
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    world_size, rank, local_rank = values
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"environment variables WORLD_SIZE={world_size}, RANK={rank}, LOCAL_RANK={local_rank}: "
                         "need WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")
    return world_size, rank, local_rank


def is_main_process() -> bool:
    """True outside torchrun and in its rank 0: the process that should print results and write files."""
    env = launch_env()
    return env is None or env[1] == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes (NCCL for a CUDA `device`, gloo for the CPU) and pick this
    process's device: a CUDA device becomes cuda:LOCAL_RANK, whatever index it named. Outside torchrun, or
    with WORLD_SIZE=1, returns the single-process context and `device` unchanged. A process group that the
    caller already initialised is used as it is (and left to the caller to destroy)."""
    env = launch_env()
    if env is None or env[0] == 1:
        return DistributedContext(device=device)
    world_size, rank, local_rank = env
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                             "device(s): start at most that many processes per node (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"device must be 'cuda' or 'cpu' for distributed training, got {str(device)!r}")
    owns = not dist.is_initialized()
    if owns:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
        # Binding NCCL to this process's GPU up front keeps its collectives (and barrier) off other GPUs.
        dist.init_process_group(backend=backend, device_id=device if backend == "nccl" else None)
    elif dist.get_world_size() != world_size:
        raise RuntimeError(f"the initialised process group has {dist.get_world_size()} processes but "
                           f"WORLD_SIZE={world_size}")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                              owns_process_group=owns)


def shutdown_distributed(context: DistributedContext) -> None:
    if context.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def shard_size(batch_size: int, world_size: int) -> int:
    """b = B / N, the rows of the global batch each process trains on."""
    if batch_size % world_size != 0:
        raise ValueError(f"batch_size ({batch_size}) is the global batch, split evenly over the {world_size} "
                         f"processes: it must be a multiple of {world_size}")
    return batch_size // world_size


# -- batch normalisation over the global batch -------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes, differentiable: every process's result feeds every process's loss, so the
    gradient with respect to one process's input is the sum of all processes' upstream gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        grad = grad_total.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any device and backend
    (torch.nn.SyncBatchNorm runs on GPUs only).

    In training, with a process group initialised, the per-channel sum and the sum of squared deviations
    from the global mean are all-reduced over the group by a differentiable all-reduce, whose backward
    all-reduces the gradients too: forward and backward are those of BatchNorm2d on the concatenated
    batch, and the running statistics are updated from the global mean and unbiased variance, as
    BatchNorm2d would. Parameters, buffers and state_dict are BatchNorm2d's; evaluation is BatchNorm2d's.
    """

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, C, H, W) -> (b, C, H, W), normalised with the statistics of all processes' x together."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        per_channel = (1, channels, 1, 1)
        # Statistics in at least fp32 (half-precision inputs under autocast), as F.batch_norm keeps them.
        xs = x.to(torch.promote_types(x.dtype, torch.float32))
        local_count = x.numel() // channels
        # One all-reduce carries the channel sums and the element count, (C + 1,).
        sums_and_count = _AllReduceSum.apply(torch.cat([xs.sum(dim=(0, 2, 3)), xs.new_full((1,), local_count)]),
                                             self.process_group)
        count = float(sums_and_count[channels].detach())
        if count <= 1:
            raise ValueError(f"batch norm needs more than 1 value per channel over all processes, got input "
                             f"shape {tuple(x.shape)} here and {count:.0f} values in all")
        mean = sums_and_count[:channels] / count
        centered = xs - mean.view(per_channel)
        # Squared deviations from the global mean (two passes), not E[x^2] - E[x]^2, which cancels badly.
        var = _AllReduceSum.apply((centered * centered).sum(dim=(0, 2, 3)), self.process_group) / count
        y = centered * torch.rsqrt(var + self.eps).view(per_channel)
        if self.affine:
            y = y * self.weight.view(per_channel) + self.bias.view(per_channel)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, biased_var: torch.Tensor, count: float) -> None:
        # BatchNorm2d's rule: an exponential (or, with momentum=None, cumulative) average of the batch mean
        # and of the UNBIASED batch variance.
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        unbiased = biased_var * (count / (count - 1))
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)

    @classmethod
    def convert(cls, module: nn.Module, process_group=None) -> nn.Module:
        """`module` with every BatchNorm2d replaced by a GlobalBatchNorm2d that shares its parameters and
        buffers (an optimizer made before still holds the right tensors); names and state_dict keys stay."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group=process_group)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            if module.track_running_stats:
                converted.running_mean, converted.running_var = module.running_mean, module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (cls, nn.SyncBatchNorm)):
            raise TypeError(f"GlobalBatchNorm2d.convert handles BatchNorm2d only, found {type(module).__name__}")
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child, process_group))
        return module


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make `model`'s batch norms use the global batch's statistics: SyncBatchNorm on CUDA, GlobalBatchNorm2d
    elsewhere. Parameter names and state_dict keys do not change, so checkpoints load into a plain model."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlobalBatchNorm2d.convert(model)


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """`model` in DistributedDataParallel (which averages gradients over the processes and copies rank 0's
    parameters and buffers to every process as it wraps), or `model` itself in a single process."""
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


__all__ = ["DistributedContext", "GlobalBatchNorm2d", "convert_batchnorm", "init_distributed", "is_main_process",
           "launch_env", "shard_size", "shutdown_distributed", "wrap_model"]
