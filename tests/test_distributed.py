"""crnn_fast.distributed in one process: the launch environment, batch splitting, and GlobalBatchNorm2d's
arithmetic against BatchNorm2d in a one-process gloo group (tests/test_train_ddp.py runs two processes)."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from crnn_fast.data import Charset
from crnn_fast.distributed import (
    DistributedContext,
    GlobalBatchNorm2d,
    convert_batchnorm,
    init_distributed,
    is_main_process,
    launch_env,
    shard_size,
)
from crnn_fast.models.crnn import CRNN, CRNNConfig

TINY = CRNNConfig(channels=(4, 8, 8, 8, 16, 16, 16), lstm_hidden=8)


@pytest.fixture
def one_process_group():
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available in this PyTorch build")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture
def no_launch_env(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_outside_torchrun_is_one_process(no_launch_env):
    assert launch_env() is None and is_main_process()
    context = init_distributed(torch.device("cpu"))
    assert context == DistributedContext() and context.is_main and not context.enabled
    assert context.max(3.5) == 3.5 and context.mean(2.0) == 2.0 and context.broadcast_object({"a": 1}) == {"a": 1}
    context.barrier()


def test_launch_env_errors_name_the_variable(no_launch_env):
    no_launch_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK is not set"):
        launch_env()
    no_launch_env.setenv("RANK", "one")
    no_launch_env.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="RANK must be an integer"):
        launch_env()
    no_launch_env.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        launch_env()
    no_launch_env.setenv("RANK", "1")
    assert launch_env() == (2, 1, 0) and not is_main_process()


def test_shard_size():
    assert shard_size(32, 1) == 32 and shard_size(32, 4) == 8
    with pytest.raises(ValueError, match=r"batch_size \(30\).*multiple of 4"):
        shard_size(30, 4)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype,shape,tol", [
    (torch.float64, (3, 5, 4, 7), 1e-12),
    (torch.float32, (2, 3, 1, 9), 1e-5),
    (torch.float32, (1, 4, 2, 2), 1e-5),  # B=1: the statistics come from H x W alone
])
def test_global_batchnorm_is_batchnorm_in_one_process(one_process_group, momentum, dtype, shape, tol):
    torch.manual_seed(0)
    channels = shape[1]
    reference = nn.BatchNorm2d(channels, momentum=momentum).to(dtype)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    synced = GlobalBatchNorm2d(channels, momentum=momentum).to(dtype)
    synced.load_state_dict(reference.state_dict())
    for step in range(3):
        x = (torch.randn(shape, dtype=dtype) * (step + 1) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        upstream = torch.randn(shape, dtype=dtype)
        y, y_ref = synced(x), reference(x_ref)
        torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)
        (y * upstream).sum().backward()
        (y_ref * upstream).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=tol, atol=tol)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(synced, name).grad, getattr(reference, name).grad, rtol=tol, atol=tol)
        for name, buffer in reference.named_buffers():
            torch.testing.assert_close(getattr(synced, name), buffer, rtol=tol, atol=tol, msg=name)
    synced.eval(), reference.eval()
    x = torch.randn(shape, dtype=dtype)
    torch.testing.assert_close(synced(x), reference(x), rtol=tol, atol=tol)


def test_global_batchnorm_needs_two_values(one_process_group):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        GlobalBatchNorm2d(3)(torch.randn(1, 3, 1, 1))


def test_convert_keeps_parameters_and_state_dict_layout():
    model = CRNN(Charset("abc").num_classes, variant=TINY)
    keys = list(model.state_dict())
    parameters = list(model.parameters())
    converted = convert_batchnorm(model, torch.device("cpu"))
    assert sum(isinstance(m, GlobalBatchNorm2d) for m in converted.modules()) == len(TINY.batch_norm)
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    # The optimizer, made before the conversion, must still hold the model's parameters.
    assert all(a is b for a, b in zip(converted.parameters(), parameters))
    assert list(converted.state_dict()) == keys
    CRNN(Charset("abc").num_classes, variant=TINY).load_state_dict(converted.state_dict())
    with pytest.raises(TypeError, match="BatchNorm1d"):
        GlobalBatchNorm2d.convert(nn.Sequential(nn.BatchNorm1d(4)))
