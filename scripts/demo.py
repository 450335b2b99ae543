#!/usr/bin/env python3
"""Main job, networked: a 5-node CAS network on 127.0.0.1 driven only through
the `cas` command.

1. starts N `cas serve` processes (port 0; the first one's address, read
   with `cas status --json`, bootstraps the others) and waits until every
   node sees all the others;
2. stores a real file of random bytes (100 MB by default) with `cas put`;
3. shows which nodes hold its blobs (`cas stat KEY --json`);
4. kills the owner and the other node holding the most blobs with SIGKILL;
5. gets the file back through a surviving node and checks its SHA-256.

Every process it starts is stopped when it ends, however it ends. Run it with
the venv's python (`make demo-py`). Exit status 0 when the copy is
byte-identical, 1 on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

CAS = [str(Path(sys.executable).parent / "cas")]
if not Path(CAS[0]).exists():
    CAS = [sys.executable, "-m", "cas"]


class DemoFailed(Exception):
    pass


def say(message: str) -> None:
    print(message, flush=True)


def cas(*args: object, timeout: float = 600) -> Dict[str, Any]:
    """Runs `cas ARGS --json`; returns its JSON answer or raises DemoFailed."""
    argv = [*CAS, *map(str, args), "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise DemoFailed(f"`cas {' '.join(map(str, args))}` exited {result.returncode}: {result.stderr.strip()}")
    answer: Dict[str, Any] = json.loads(result.stdout)
    return answer


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Node:
    """One `cas serve` process."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.data_dir = work / name
        self.log_path = work / f"{name}.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.id = ""
        self.address: Optional[str] = None

    def start(self, bootstrap: Optional[str], network_key: Optional[Path] = None) -> None:
        argv = [*CAS, "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"]
        if bootstrap:
            argv += ["--bootstrap", bootstrap]
        if network_key:
            argv += ["--network-key", str(network_key)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        status = wait_until(self._status, timeout=60, what=f"{self.name} to answer `cas status`")
        self.id, self.address = status["id"], status["address"]

    def _status(self) -> Optional[Dict[str, Any]]:
        if self.process is None or self.process.poll() is not None:
            code = self.process.returncode if self.process else None
            raise DemoFailed(f"{self.name} exited with status {code}: {self.log_tail()}")
        try:
            return cas("status", "--data-dir", self.data_dir, timeout=30)
        except DemoFailed:
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def alive_peers(self) -> int:
        peers = cas("peers", "--data-dir", self.data_dir, timeout=30)["peers"]
        return sum(p["state"] == "alive" for p in peers)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return "(no log)"


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(args: argparse.Namespace, work: Path, nodes: List[Node]) -> None:
    say(f"== starting {args.nodes} `cas serve` nodes on 127.0.0.1 (data under {work})")
    first = nodes[0]
    first.start(bootstrap=None)
    if not first.address:
        raise DemoFailed(
            "the first node reports no network address (`cas status --json` gives \"address\": null): "
            "this build of cas-core has no networking yet, so a multi-node demo cannot run"
        )
    say(f"   {first.name}  {first.address:<21}  {first.id[:16]}  (bootstrap node)")
    # The first node of a network creates its key; only holders of a copy can join.
    key = first.data_dir / "network_key"
    say(f"   {first.name} created the network key {key}; the others are started with --network-key {key}")
    for node in nodes[1:]:
        node.start(bootstrap=first.address, network_key=key)
        say(f"   {node.name}  {node.address:<21}  {node.id[:16]}")
    want = args.nodes - 1
    wait_until(
        lambda: all(n.alive_peers() == want for n in nodes), timeout=60, what=f"every node to see {want} alive peers"
    )
    say(f"   every node sees the {want} others")

    size = args.size_mb * 1_000_000
    src = work / "film.bin"
    say(f"== making a {human(size)} file of random bytes")
    want_sha = make_file(src, size)

    owner = nodes[0]
    say(f"== cas put on {owner.name}")
    t0 = time.monotonic()
    put = cas("put", src, "--data-dir", owner.data_dir)
    key = put["key"]
    put_seconds = time.monotonic() - t0
    say(f"   key: {key}")
    say(f"   stored in {put_seconds:.1f}s ({human(size / put_seconds)}/s), {put['chunks']} chunks")
    say(f"   every blob reached {put['replicas']} of {put['replicas_wanted']} copies on other nodes")
    if put["replicas"] < put["replicas_wanted"]:
        raise DemoFailed("the put reached too few replicas for the rest of the demo to mean anything")

    say("== where the replicas are (cas stat --json)")
    info = cas("stat", key, "--data-dir", owner.data_dir)
    by_id = {n.id: n for n in nodes}
    blobs = len(info["holders"])
    held = {n["id"]: sum(n["id"] in h["nodes"] for h in info["holders"]) for n in info["nodes"]}
    for node in nodes:
        role = " (owner)" if node is owner else ""
        say(f"   {node.name}  {node.address:<21}  holds {held.get(node.id, 0):>4} of {blobs} blobs{role}")
    fewest = min(len(h["nodes"]) for h in info["holders"])
    say(f"   every blob has at least {fewest} copies")
    unknown = [i for i in held if i not in by_id]
    if unknown:
        raise DemoFailed(f"cas stat names holders that are not demo nodes: {unknown}")

    replica_holders = [i for i in held if i != owner.id]
    if not replica_holders:
        raise DemoFailed("no node other than the owner holds a replica")
    victim = by_id[max(replica_holders, key=lambda i: held[i])]
    say(f"== kill -9 the owner {owner.name} and the replica holder {victim.name}")
    owner.kill()
    victim.kill()

    survivors = [n for n in nodes if n.alive()]
    reader = survivors[-1]
    dest = work / "copy.bin"
    say(f"== cas get on {reader.name}")
    t0 = time.monotonic()
    got = cas("get", key, dest, "--data-dir", reader.data_dir)
    get_seconds = time.monotonic() - t0
    got_sha = sha256_of(dest)
    say(f"   {got['size']} bytes in {get_seconds:.1f}s ({human(size / get_seconds)}/s)")
    say(f"   sha256 original: {want_sha}")
    say(f"   sha256 copy:     {got_sha}")
    if got_sha != want_sha or got["size"] != size:
        raise DemoFailed("the copy differs from the original")

    say("== summary")
    say(f"   {args.nodes} nodes; a {human(size)} file stored on {owner.name}, blobs on {len(held)} nodes")
    say(f"   {owner.name} (owner) and {victim.name} (replica holder) killed with SIGKILL")
    say(f"   {reader.name} got the file back, SHA-256 identical")
    say("OK: the copy is byte-identical")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5, help="nodes to start (at least 5)")
    parser.add_argument("--size-mb", type=int, default=100, help="size of the file, in MB (default 100)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where data goes (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    args = parser.parse_args()
    if args.nodes < 5:
        parser.error("--nodes must be at least 5 (the owner and a holder are killed; 3 must stay)")

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cas-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    nodes = [Node(f"node{i}", work) for i in range(args.nodes)]
    # SIGTERM/SIGHUP end the demo like Ctrl-C does, through the cleanup below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    status = 1
    try:
        run(args, work, nodes)
        status = 0
    except DemoFailed as e:
        say(f"FAILED: {e}")
        for node in nodes:
            if node.process is not None and node.log_tail():
                say(f"--- {node.name} log (tail)\n{node.log_tail()}")
    except KeyboardInterrupt:
        say("interrupted")
        status = 130
    finally:
        for node in nodes:
            node.stop()
        say(f"== stopped {sum(n.process is not None for n in nodes)} node process(es)")
        if args.keep or args.work_dir:
            say(f"   data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
