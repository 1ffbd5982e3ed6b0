import json
import subprocess
import sys
import textwrap

import crnn_fast


def test_backends_reports_what_is_built_and_what_runs_here():
    import torch

    info = crnn_fast.backends()
    assert set(info) >= {"extension", "extension_error", "cuda_available", "triton", "compiled", "usable"}
    assert ("cpu" in info["compiled"]["ctc_greedy"]) == info["extension"]
    for op, names in info["usable"].items():
        assert names[0] == "ref", op
        if not torch.cuda.is_available():
            assert "cuda" not in names, op  # a compiled CUDA kernel is not usable without a GPU
    for op, devices in info["compiled"].items():
        assert set(devices) <= {"cpu", "cuda"}
        if "cpu" in devices:
            assert "cpu" in info["usable"][op]
    assert "torch" in info["usable"]["lstm"]
    json.dumps(info)


def test_import_is_quick_it_loads_no_triton_or_inductor():
    """Registering the Triton ops pulls in torch._inductor (about a second): that waits for their first use."""
    script = textwrap.dedent("""
        import sys
        import crnn_fast
        import crnn_fast.nn, crnn_fast.ops
        heavy = sorted(m for m in sys.modules if m == "triton" or m.startswith(("triton.", "torch._inductor")))
        print(len(heavy), heavy[:5])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 "), result.stdout


def test_version_flag():
    result = subprocess.run([sys.executable, "-m", "crnn_fast.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"crnn-fast {crnn_fast.__version__} (torch "), result.stdout


def test_import_without_extension_says_how_to_build():
    """Simulate a machine where crnn_fast._C could not be built: the package imports, references run,
    and calling a compiled op explains what is missing."""
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["crnn_fast._C"] = None  # makes `import crnn_fast._C` raise ImportError
        import torch, crnn_fast
        assert crnn_fast.backends()["extension"] is False
        log_probs = torch.randn(2, 5, 4).log_softmax(-1)
        try:
            crnn_fast.ctc_greedy(log_probs, backend="cpu")
        except RuntimeError as exc:
            assert "crnn_fast._C" in str(exc) and "pip install" in str(exc), exc
        else:
            raise AssertionError("backend='cpu' must fail without the extension")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = crnn_fast.ctc_greedy(log_probs)  # auto: the reference, with a warning
        assert any("not built" in str(w.message) for w in caught)
        assert out.tokens.shape == (2, 5)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
