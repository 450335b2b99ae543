"""Shared fixtures of the pytest suites: nodes in this process, `cas serve`
processes, test files, and bounded waiting. Everything started here is
stopped by a finalizer, whatever the test did."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

import cas


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--repeat", type=int, default=1, metavar="N", help="run each selected test N times (make test-repeat)"
    )


def pytest_configure(config: pytest.Config) -> None:
    # Several tests press Ctrl-C (SIGINT) on this process or on the `cas`
    # processes it starts. A suite started in the background by a
    # non-interactive shell (`make test &`, nohup) inherits SIGINT ignored,
    # and ignored stays ignored across exec: those tests would then test
    # nothing but the shell. Take SIGINT back: Python's handler here, and
    # (a caught signal is reset at exec) the default in every child.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "network: needs several nodes talking over TCP")
    config.addinivalue_line("markers", "netns: runs nodes in Linux network namespaces (root, ip and nft)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat = metafunc.config.getoption("repeat")
    if repeat > 1:
        metafunc.fixturenames.append("_repetition")
        metafunc.parametrize("_repetition", range(repeat), ids=lambda i: f"run{i}")


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Polls `condition` until it returns something true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def fixed_port() -> int:
    """A free TCP port on 127.0.0.1 below the kernel's ephemeral range, for a
    node that must come back on the same address after a restart, as a
    node with a configured port does: no outgoing connection or port-0
    listener can take it while the node is down."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Path]:
    """Writes a file of `size` random bytes (`name` under tmp_path)."""
    counter = iter(range(1_000_000))

    def make(size: int, name: Optional[str] = None) -> Path:
        path = tmp_path / (name or f"input-{next(counter)}.bin")
        with open(path, "wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, 4 << 20))
                f.write(block)
                left -= len(block)
        return path

    return make


@pytest.fixture
def node(tmp_path: Path) -> Iterator[cas.Node]:
    """One node without networking, small chunks so files have many."""
    n = cas.Node(tmp_path / "node", chunk_size=64 * 1024, fsync=False)
    yield n
    n.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., cas.Node]]:
    """Factory of nodes in this process, all closed at the end."""
    started: List[cas.Node] = []

    def start(name: str, **kwargs: object) -> cas.Node:
        kwargs.setdefault("fsync", False)
        n = cas.Node(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        started.append(n)
        return n

    yield start
    for n in started:
        n.close()


# ---- the command line ----------------------------------------------------------------------


def network_key_file(directory: Path) -> Path:
    """A new network key made by `cas keygen`, in `directory`."""
    path = directory / "network.key"
    if not path.exists():
        run_cas("keygen", path)
    return path


def cas_command() -> List[str]:
    """The `cas` console script installed beside this interpreter."""
    script = Path(sys.executable).parent / "cas"
    if script.exists():
        return [str(script)]
    found = shutil.which("cas")
    return [found] if found else [sys.executable, "-m", "cas"]


def run_cas(*args: object, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*cas_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"cas {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result


def cas_json(*args: object, timeout: float = 300) -> dict:
    return json.loads(run_cas(*args, "--json", timeout=timeout).stdout)


class Server:
    """A `cas serve` process on its own data directory."""

    def __init__(self, data_dir: Path, process: subprocess.Popen[str]) -> None:
        self.data_dir = data_dir
        self.process = process
        self.status: dict = {}

    def alive(self) -> bool:
        return self.process.poll() is None

    def query(self) -> Optional[dict]:
        if not self.alive():
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"cas serve on {self.data_dir} exited {self.process.returncode}: {stderr}")
        result = run_cas("status", "--data-dir", self.data_dir, "--json", check=False, timeout=30)
        return json.loads(result.stdout) if result.returncode == 0 else None

    @property
    def address(self) -> Optional[str]:
        return self.status.get("address")

    @property
    def id(self) -> str:
        return self.status["id"]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.alive():
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory of `cas serve` processes; waits until each answers `cas status`,
    and stops every one of them at the end (kill -9 if SIGTERM is not enough)."""
    servers: List[Server] = []

    def start(name: str, *extra: object) -> Server:
        data_dir = tmp_path / name
        process = subprocess.Popen(
            [*cas_command(), "serve", "--data-dir", str(data_dir), "--no-fsync", *map(str, extra)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = Server(data_dir, process)
        servers.append(server)
        server.status = wait_until(server.query, timeout=60, what=f"cas serve on {data_dir} to answer")  # type: ignore[assignment]
        return server

    yield start
    for server in servers:
        server.stop()
        if server.process.stderr:
            server.process.stderr.close()


class BusyCounter:
    """A Python thread counting as fast as it can: it advances only while no
    other thread holds the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-counter")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.count += 1

    def __enter__(self) -> "BusyCounter":
        self._thread.start()
        wait_until(lambda: self.count > 0, timeout=10, what="the counting thread to start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
