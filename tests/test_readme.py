"""The README's ```python blocks run as written, top to bottom in one interpreter, on the CPU."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_readme_has_python_blocks_and_names_no_file_outside_the_repository():
    text = README.read_text()
    assert len(python_blocks()) >= 4
    root = README.parent
    # Paths (with a folder) are from the repository root; a bare .md name must be a file at the root.
    for name in re.findall(r"`([\w./-]+\.(?:md|py|sh|json|txt|toml))`", text):
        if "/" in name or name.endswith(".md"):
            assert (root / name).exists(), f"README names {name}, which is not in the repository"


def test_readme_python_blocks_run_in_order(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("onnxruntime")
    script = "\n\n".join(python_blocks())
    (tmp_path / "readme_blocks.py").write_text(script)
    result = subprocess.run([sys.executable, str(tmp_path / "readme_blocks.py")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
