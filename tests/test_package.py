import json
import subprocess
import sys
import textwrap

import crnn_fast


def test_backends_reports_what_is_available():
    info = crnn_fast.backends()
    assert set(info) >= {"extension", "extension_error", "cuda_available", "triton", "ops"}
    assert "ref" in info["ops"]["ctc_greedy"]
    assert ("cpu" in info["ops"]["ctc_greedy"]) == info["extension"]
    json.dumps(info)


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
