"""scripts/demo.py, the main job: it succeeds, and leaves no process behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def run_demo(work: Path, size_mb: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), "--size-mb", str(size_mb), "--work-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.network
def test_demo_on_a_network(tmp_path: Path) -> None:
    work = tmp_path / "work"
    result = run_demo(work, 20)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the copy is byte-identical" in result.stdout
    assert "stopped 5 node process(es)" in result.stdout
    assert processes_mentioning(str(work)) == []
