import os

# Before anything imports triton: run Triton kernels on CPU tensors through the interpreter when no GPU is here.
os.environ.setdefault("TRITON_INTERPRET", "0" if os.environ.get("CRNN_FAST_TEST_GPU") == "1" else "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: small models gain nothing from more, and on a busy 2-core machine
    OpenMP barriers with more threads than free cores cost seconds per forward pass."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
