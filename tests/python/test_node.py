"""cas.Node in one process, without networking: put, get, open, progress,
threads and the GIL."""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import cas
from conftest import BusyCounter, sha256_of, wait_until

CHUNK = 64 * 1024


def test_put_get_round_trip(node: cas.Node, make_file, tmp_path: Path) -> None:
    src = make_file(3 * CHUNK + 123)
    key = node.put(src)
    assert isinstance(key, str) and key.startswith("cas1")
    # The key says what the put did; a node without peers makes no copies.
    assert isinstance(key, cas.PutResult) and key.key == key
    assert (key.size, key.chunks, key.new_blobs) == (3 * CHUNK + 123, 4, 5)
    assert (key.replicas, key.replicas_wanted) == (0, 3)
    assert node.put(src).new_blobs == 0
    dest = tmp_path / "copy.bin"
    assert node.get(key, dest) == src.stat().st_size
    assert sha256_of(dest) == sha256_of(src)
    assert node.get_bytes(key) == src.read_bytes()


def test_files_lists_what_this_node_put(node: cas.Node, make_file) -> None:
    import time

    assert node.files() == []
    before = time.time()
    src = make_file(1000)
    key = node.put(src)
    label = node.put_bytes(b"minutes of the meeting", name="minutes.txt")
    files = node.files()
    assert [(f.key, f.name, f.size) for f in files] == [(key, src.name, 1000), (label, "minutes.txt", 22)]
    assert all(isinstance(f, cas.FileEntry) and before - 1 <= f.time <= time.time() + 1 for f in files)


def test_str_and_path_are_accepted(node: cas.Node, make_file, tmp_path: Path) -> None:
    src = make_file(1000)
    key = node.put(str(src))
    assert node.put(src) == key
    node.get(key, str(tmp_path / "a.bin"))
    node.get(key, tmp_path / "b.bin")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == src.read_bytes()


def test_same_file_twice_gives_the_same_key(node: cas.Node, make_file, tmp_path: Path) -> None:
    src = make_file(5 * CHUNK)
    key = node.put(src)
    copy = tmp_path / "same-content.bin"
    copy.write_bytes(src.read_bytes())
    assert node.put(copy) == key
    assert node.put_bytes(src.read_bytes()) == key
    assert node.put_bytes(b"other") != key


def test_put_bytes_accepts_buffers(node: cas.Node) -> None:
    data = b"abc" * 50_000
    key = node.put_bytes(data)
    assert node.put_bytes(bytearray(data)) == key
    assert node.put_bytes(memoryview(data)) == key
    assert node.get_bytes(key) == data


def test_put_bytes_refuses_what_is_not_a_buffer(node: cas.Node) -> None:
    # bytes(n) would make n zero bytes, bytes([...]) bytes from a list of ints:
    # neither is a buffer, and storing either silently would be wrong.
    stats_before = node.stats().blobs_stored
    for not_a_buffer in (12345, 10**15, [1, 2, 3], "text"):
        with pytest.raises(TypeError):
            node.put_bytes(not_a_buffer)  # type: ignore[arg-type]
    assert node.stats().blobs_stored == stats_before


def test_empty_file(node: cas.Node, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    key = node.put(empty)
    assert node.get_bytes(key) == b""
    assert node.get(key, tmp_path / "out") == 0
    assert (tmp_path / "out").read_bytes() == b""
    with node.open(key) as f:
        assert f.read() == b""


def test_open_range_reads_fetch_only_needed_chunks(node: cas.Node, make_file) -> None:
    src = make_file(20 * CHUNK + 777)
    data = src.read_bytes()
    key = node.put(src)
    with node.open(key) as f:
        assert isinstance(f, io.RawIOBase)
        assert f.readable() and f.seekable() and not f.writable()
        assert f.size == len(data)
        assert f.seek(7 * CHUNK + 10) == 7 * CHUNK + 10
        assert f.read(100) == data[7 * CHUNK + 10 : 7 * CHUNK + 110]
        assert f.chunks_fetched == 1
        assert f.tell() == 7 * CHUNK + 110
        # A read across a chunk boundary fetches exactly the next chunk.
        f.seek(9 * CHUNK - 50)
        assert f.read(100) == data[9 * CHUNK - 50 : 9 * CHUNK + 50]
        assert f.chunks_fetched == 3
        f.seek(-10, io.SEEK_END)
        assert f.read() == data[-10:]
        f.seek(-20, io.SEEK_CUR)
        assert f.read(5) == data[-20:-15]
        assert f.chunks_fetched == 4
        f.seek(len(data) + 100)
        assert f.read(10) == b""
        buf = bytearray(1000)
        f.seek(CHUNK * 2)
        assert f.readinto(buf) == 1000
        assert bytes(buf) == data[2 * CHUNK : 2 * CHUNK + 1000]
        with pytest.raises(ValueError):
            f.seek(-1)
    assert f.closed
    with pytest.raises(ValueError):
        f.read(1)


def test_open_works_with_io_wrappers(node: cas.Node) -> None:
    text = "".join(f"line {i}\n" for i in range(20_000))
    key = node.put_bytes(text.encode())
    with node.open(key) as raw:
        lines = io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8").readlines()
    assert lines[12345] == "line 12345\n" and len(lines) == 20_000
    with node.open(key) as f:
        assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(text.encode()).hexdigest()


def test_progress_reports_done_and_total(node: cas.Node, make_file, tmp_path: Path) -> None:
    src = make_file(10 * CHUNK + 5)
    size = src.stat().st_size
    calls: list[tuple[int, int]] = []
    key = node.put(src, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert all(total == size for _, total in calls)

    calls.clear()
    node.get(key, tmp_path / "out.bin", progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (size, size)
    assert len(calls) >= 2


def test_progress_with_tqdm(node: cas.Node, make_file, tmp_path: Path) -> None:
    tqdm = pytest.importorskip("tqdm").tqdm
    src = make_file(8 * CHUNK)
    size = src.stat().st_size
    out = io.StringIO()
    with tqdm(total=size, unit="B", unit_scale=True, file=out) as bar:
        key = node.put(src, progress=lambda done, total: bar.update(done - bar.n))
        assert bar.n == size
    with tqdm(total=size, unit="B", unit_scale=True, file=out) as bar:
        node.get(key, tmp_path / "copy", progress=lambda done, total: bar.update(done - bar.n))
        assert bar.n == size
    assert "100%" in out.getvalue()


def test_exception_in_progress_callback_is_raised(node: cas.Node, make_file, tmp_path: Path) -> None:
    src = make_file(6 * CHUNK)
    key = node.put(src)

    def explode(done: int, total: int) -> None:
        raise ZeroDivisionError("progress callback failed on purpose")

    with pytest.raises(ZeroDivisionError, match="on purpose"):
        node.put(src, progress=explode)
    with pytest.raises(ZeroDivisionError, match="on purpose"):
        node.put_bytes(b"x" * CHUNK * 3, progress=explode)
    dest = tmp_path / "never.bin"
    with pytest.raises(ZeroDivisionError):
        node.get(key, dest, progress=explode)
    # The node is still fine afterwards.
    assert node.get_bytes(key) == src.read_bytes()


def test_a_callback_failing_at_the_very_end_leaves_nothing_at_dest(node: cas.Node, make_file, tmp_path: Path) -> None:
    """The last progress call comes after the last byte is written and before
    the get commits: a failure there cancels the get, which then cannot
    commit (run it 200 times with `make test-repeat`)."""
    src = make_file(4 * CHUNK)
    key = node.put(src)

    def explode_at_the_end(done: int, total: int) -> None:
        if done == total:
            raise ZeroDivisionError("failed after the last byte")

    dest = tmp_path / "late.bin"
    with pytest.raises(ZeroDivisionError, match="last byte"):
        node.get(key, dest, progress=explode_at_the_end)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".cas-get-")]


class HeldGet:
    """A get on a node started with the test hook `_pause_before_commit`: it
    stops between its last byte and its commit until released, so a test can
    act in exactly that window instead of hoping to hit it."""

    def __init__(self, hook_dir: Path) -> None:
        self.hook_dir = hook_dir
        hook_dir.mkdir()

    def wait_paused(self) -> None:
        wait_until(lambda: (self.hook_dir / "paused").exists(), timeout=60, what="the get to reach its commit")

    def release(self) -> None:
        (self.hook_dir / "release").touch()


def test_cancel_between_the_last_byte_and_the_commit_leaves_nothing(nodes, make_file, tmp_path: Path) -> None:
    held = HeldGet(tmp_path / "hook")
    node = nodes("held", chunk_size=CHUNK, _pause_before_commit=held.hook_dir)
    src = make_file(4 * CHUNK)
    key = node.put(src)
    dest = tmp_path / "cancelled.bin"
    cancel = cas.Cancel()
    outcome: list[BaseException | int] = []

    def get() -> None:
        try:
            outcome.append(node.get(key, dest, cancel=cancel))
        except BaseException as e:  # noqa: BLE001 (examined below)
            outcome.append(e)

    worker = threading.Thread(target=get)
    worker.start()
    held.wait_paused()
    assert cancel.cancel() is True, "the get had not committed: the cancel is in time"
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], cas.CancelledError), outcome
    assert cancel.cancelled
    assert not dest.exists()
    assert leftovers(tmp_path) == []
    # The node goes on working.
    held.release()
    assert node.get(key, dest) == src.stat().st_size


def test_a_cancel_after_the_commit_is_told_it_came_too_late(node: cas.Node, make_file, tmp_path: Path) -> None:
    src = make_file(3 * CHUNK)
    key = node.put(src)
    cancel = cas.Cancel()
    dest = tmp_path / "done.bin"
    assert node.get(key, dest, cancel=cancel) == src.stat().st_size
    assert cancel.cancel() is False
    assert not cancel.cancelled
    assert dest.read_bytes() == src.read_bytes()


def test_a_cancel_before_the_get_starts_stops_it_at_once(node: cas.Node, make_file, tmp_path: Path) -> None:
    key = node.put(make_file(3 * CHUNK))
    cancel = cas.Cancel()
    assert cancel.cancel() is True
    with pytest.raises(cas.CancelledError):
        node.get(key, tmp_path / "never.bin", cancel=cancel)
    assert not (tmp_path / "never.bin").exists()


def test_ctrl_c_between_the_last_byte_and_the_commit_leaves_nothing(nodes, make_file, tmp_path: Path) -> None:
    held = HeldGet(tmp_path / "hook")
    node = nodes("held", chunk_size=CHUNK, _pause_before_commit=held.hook_dir)
    key = node.put(make_file(4 * CHUNK))
    dest = tmp_path / "interrupted.bin"
    main = threading.get_ident()

    returned = threading.Event()

    def press_ctrl_c() -> None:
        held.wait_paused()
        signal.pthread_kill(main, signal.SIGINT)
        # Were the interrupt lost, the get would wait for its release
        # forever: release it, and the test fails instead of hanging.
        if not returned.wait(60):
            held.release()

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            node.get(key, dest)
    finally:
        returned.set()
        presser.join(timeout=60)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_gil_is_released_during_put_and_get(tmp_path: Path, make_file) -> None:
    src = make_file(64 << 20)
    with cas.Node(tmp_path / "gil", fsync=False) as node, BusyCounter() as counter:
        before = counter.count
        t0 = time.monotonic()
        key = node.put(src)
        put_advance, put_seconds = counter.count - before, time.monotonic() - t0
        before = counter.count
        node.get(key, tmp_path / "copy.bin")
        get_advance = counter.count - before
    # Had the put held the GIL, the counting thread could not have run
    # (the Python-level switch interval is 5 ms; the put takes far longer).
    assert put_seconds > 0.02
    assert put_advance > 10_000, f"counter advanced by {put_advance} during a {put_seconds:.2f}s put"
    assert get_advance > 10_000


def test_threads_share_one_node(node: cas.Node, tmp_path: Path) -> None:
    payloads = [bytes([i]) * (CHUNK * (i + 2) + i) for i in range(8)]
    keys: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                key = node.put_bytes(payloads[i])
                keys[i] = key
                assert node.get_bytes(key) == payloads[i]
                dest = tmp_path / f"t{i}.bin"
                node.get(key, dest)
                assert dest.read_bytes() == payloads[i]
                with node.open(key) as f:
                    f.seek(CHUNK)
                    assert f.read(10) == payloads[i][CHUNK : CHUNK + 10]
        except BaseException as e:  # noqa: BLE001 (reported by the main thread)
            errors.append(e)

    with BusyCounter() as counter:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert counter.count > 0
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert len(set(keys.values())) == 8


def test_context_manager_closes_and_never_swallows(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="from the body"):
        with cas.Node(tmp_path / "n") as node:
            raise RuntimeError("from the body")
    assert node.closed
    with pytest.raises(cas.ClosedError, match="closed"):
        node.put_bytes(b"x")
    with pytest.raises(cas.ClosedError):
        _ = node.id
    node.close()  # a second close does nothing
    # The data directory was released: a new node can open it.
    with cas.Node(tmp_path / "n") as again:
        assert not again.closed


def test_node_properties(node: cas.Node, tmp_path: Path) -> None:
    assert len(node.id) == 64 and int(node.id, 16) >= 0
    assert node.address is None  # no listen address given
    assert node.peers() == []
    assert Path(node.data_dir) == tmp_path / "node"
    key = node.put_bytes(b"y" * (3 * CHUNK))
    stat = node.stat(key)
    assert (stat.size, stat.chunks, stat.chunk_size) == (3 * CHUNK, 3, CHUNK)
    assert stat.key == key
    assert len(stat.holders) == 2  # the manifest and one distinct chunk (all three are equal)
    assert stat.nodes == [node.id]
    stats = node.stats()
    assert stats.blobs_stored >= 2 and stats.bytes_stored > 0
    assert (stats.blobs_repaired, stats.request_timeouts, stats.peers_alive) == (0, 0, 0)  # a lone node
    assert "cas.Node" in repr(node)


def test_same_id_after_restart(tmp_path: Path) -> None:
    with cas.Node(tmp_path / "n") as a:
        first = a.id
        key = a.put_bytes(b"persisted")
    with cas.Node(tmp_path / "n") as b:
        assert b.id == first
        assert b.get_bytes(key) == b"persisted"


def test_secret_makes_keys_convergent_across_nodes(nodes) -> None:
    secret = bytes(range(32))
    a = nodes("a", secret=secret)
    b = nodes("b", secret=secret)
    c = nodes("c")
    assert a.put_bytes(b"shared content") == b.put_bytes(b"shared content")
    assert a.put_bytes(b"shared content") != c.put_bytes(b"shared content")


INTERRUPT_SCRIPT = """
import os, signal, sys, threading, time
import cas
work = sys.argv[1]
with cas.Node(os.path.join(work, "node"), fsync=False) as node:
    key = node.put(os.path.join(work, "big.bin"))
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        node.get(key, os.path.join(work, "copy.bin"))
        print("finished")
    except KeyboardInterrupt:
        print("interrupted")
"""


def test_ctrl_c_interrupts_a_long_get(tmp_path: Path, make_file) -> None:
    make_file(300 << 20, "big.bin")
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted"
    # The cancelled get left nothing behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "node"]
