#!/usr/bin/env python3
"""The summary at the end of `make test`: one line per suite, then the totals.

    scripts/test_summary.py run DIR SUITE COMMAND...   run COMMAND (its output shown as
                                                       it comes), keep its log and result in DIR
    scripts/test_summary.py report DIR                 print the summary; exit 1 if a suite failed

`run` exits with COMMAND's status. Counts come from what each kind of suite
prints: cargo's "test result:" lines (summed), pytest's closing line, the
last "NAME: N passed, M failed" line (the C tests' sum over their programs,
the fuzz targets'); a suite that prints none (the lint gates) counts as one
check. A suite that failed without a failed test in its counts (a build
error, a sanitizer report) counts one failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
PYTEST = re.compile(r"^=* ?((?:\d+ \w+(?:, )?)+) in [\d.]+s")
PASSED_FAILED = re.compile(r"^[\w -]+: (\d+) passed, (\d+) failed(?:,? \(?(\d+) skipped\)?)?$")


def counts(lines: List[str]) -> Dict[str, int]:
    found = {"passed": 0, "failed": 0, "skipped": 0}
    seen = False
    pytest_line = closing_line = None
    for line in lines:
        line = line.rstrip()
        if m := CARGO.search(line):
            seen = True
            for name, value in zip(("passed", "failed", "skipped"), m.groups()):
                found[name] += int(value)
        elif m := PASSED_FAILED.match(line):
            closing_line = m.groups()
        elif m := PYTEST.match(line):
            pytest_line = m[1]
    if closing_line is not None:
        # The last one: the C tests print one per program, then their sum.
        seen = True
        for name, value in zip(("passed", "failed", "skipped"), closing_line):
            found[name] += int(value or 0)
    if pytest_line is not None:
        seen = True
        for number, word in re.findall(r"(\d+) (\w+)", pytest_line):
            name = {"error": "failed", "errors": "failed"}.get(word, word)
            if name in found:
                found[name] += int(number)
    found["counted"] = seen
    return found


def run(directory: Path, suite: str, command: List[str]) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    lines: List[str] = []
    with open(directory / f"{suite}.log", "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            lines.append(line)
        status = process.wait()
    result = counts(lines)
    if not result.pop("counted"):
        result["passed" if status == 0 else "failed"] = 1
    elif status != 0 and result["failed"] == 0:
        result["failed"] = 1
    result.update(suite=suite, status=status, seconds=round(time.monotonic() - started))
    (directory / f"{suite}.json").write_text(json.dumps(result))
    return status


def line(name: str, r: Dict[str, int]) -> str:
    verdict = "ok" if r["status"] == 0 else "FAILED"
    minutes, seconds = divmod(r["seconds"], 60)
    return (
        f"{name:<14} {verdict:<6} {r['passed']:>5} passed, {r['failed']:>3} failed, {r['skipped']:>3} skipped"
        f"  ({minutes}m{seconds:02d}s)"
    )


def report(directory: Path) -> int:
    # In the order they ran.
    results = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime)]
    print(f"\n== make test: summary (each suite's log in {directory})")
    total = {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0, "status": 0}
    for r in results:
        print(line(r["suite"], r))
        for key in ("passed", "failed", "skipped", "seconds"):
            total[key] += r[key]
        total["status"] |= r["status"] != 0
    print(line("total", total))
    return 1 if total["status"] or not results else 0


def main(argv: List[str]) -> int:
    if len(argv) >= 4 and argv[0] == "run":
        return run(Path(argv[1]), argv[2], argv[3:])
    if len(argv) == 2 and argv[0] == "report":
        return report(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
