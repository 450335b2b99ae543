"""The README's Python quick start runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Quick start (Python)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_quick_start_runs(tmp_path: Path) -> None:
    blocks = quick_start_blocks()
    assert blocks, "README.md has no ```python block under '## Quick start (Python)'"
    quick_start, illustrations = blocks[0], blocks[1:]
    result = subprocess.run(
        [sys.executable, "-c", quick_start], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "key: cas1" in result.stdout
    assert "b'world'" in result.stdout
    assert "rejected: invalid key" in result.stdout
    # The shorter snippets after it (joining peers that are not here) are at least valid Python.
    for code in illustrations:
        compile(code, "README.md", "exec")
    assert (tmp_path / "copy.txt").read_text() == "hello, world\n" * 1000
