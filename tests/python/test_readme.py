"""The README's snippets run as written: the Python ones are run, the shell
ones name only commands, options and make targets that exist. (The Rust
snippets are doctests of cas-core; the C ones run in tests/c/readme.sh.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

from conftest import run_cas

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def blocks(language: str, text: str = "") -> List[str]:
    return re.findall(rf"```{language}\n(.*?)```", text or README.read_text(), flags=re.S)


def quick_start_blocks() -> List[str]:
    section = README.read_text().split("## Quick start (Python)", 1)[1].split("\n## ", 1)[0]
    return blocks("python", section)


def test_readme_python_quick_start_runs(tmp_path: Path) -> None:
    found = quick_start_blocks()
    assert found, "README.md has no ```python block under '## Quick start (Python)'"
    quick_start = found[0]
    result = subprocess.run(
        [sys.executable, "-c", quick_start], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "key: cas1" in result.stdout
    assert "13000 bytes, 0 copies on other nodes" in result.stdout
    assert "b'world'" in result.stdout
    assert "rejected: invalid key" in result.stdout
    assert (tmp_path / "copy.txt").read_text() == "hello, world\n" * 1000


def test_every_other_readme_python_snippet_runs(tmp_path: Path) -> None:
    others = blocks("python")[1:]
    assert others, "the README shows how to join peers from Python"
    for i, code in enumerate(others):
        work = tmp_path / f"snippet{i}"
        work.mkdir()
        result = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{code}\n{result.stderr}"
        if "bootstrap=" in code:
            # Run as a file, it prints what it shows: the bootstrap address, then the peer joined there.
            first = re.search(r"bootstrap address: (\S+)", result.stdout)
            assert first, result.stdout
            assert f'address="{first[1]}", state="alive"' in result.stdout, result.stdout


def shell_lines() -> Iterator[List[str]]:
    """Each command line of the README's ```sh blocks, split, without comments."""
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                yield words


def test_readme_cas_command_lines_use_real_subcommands_and_options() -> None:
    checked = 0
    helps: dict = {}
    for words in shell_lines():
        if words[0] != "cas":
            continue
        command = words[1] if not words[1].startswith("-") else ""
        if command not in helps:
            helps[command] = run_cas(*([command] if command else []), "--help").stdout
        for word in words[1:]:
            option = word.strip("[]").split("=", 1)[0]
            if option.startswith("-") and option != "-":
                assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", helps[command]), (
                    f"README: `{' '.join(words)}`: cas {command} has no option {option}"
                )
                checked += 1
    assert checked >= 10, "the README documents the command line"


def test_readme_make_targets_and_examples_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    seen = 0
    for words in shell_lines():
        if words[0] == "make":
            for target in (w for w in words[1:] if "=" not in w and not w.startswith("-")):
                assert target in targets, f"README: `{' '.join(words)}`: no make target {target}"
                seen += 1
        if words[:2] == ["cargo", "run"] and "--example" in words:
            example = words[words.index("--example") + 1]
            assert (ROOT / "cas-core" / "examples" / f"{example}.rs").exists(), f"README: no example {example}"
    assert seen >= 3
