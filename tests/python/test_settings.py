"""Bad settings are refused before anything starts, by `cas.Node` and by
`cas serve` alike (one check, in cas-core); the library's logs carry no
colour codes when stderr is not a terminal; a progress callback that raises
stops a put with nothing left half-written."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cas
from conftest import cas_command, cas_json, run_cas, wait_until

BAD_LISTEN = ["garbage", "127.0.0.1:99999", "127.0.0.1", ""]
BAD_BOOTSTRAP = ["garbage", "", "127.0.0.1:0"]


@pytest.mark.parametrize("listen", BAD_LISTEN)
def test_node_refuses_a_bad_listen_address(tmp_path: Path, listen: str) -> None:
    with pytest.raises(cas.InvalidArgumentError, match=re.escape(f'listen address "{listen}"')):
        cas.Node(tmp_path / "n", listen=listen)
    assert not (tmp_path / "n").exists(), "nothing was created"


@pytest.mark.parametrize("bootstrap", BAD_BOOTSTRAP)
def test_node_refuses_a_bad_bootstrap_address(tmp_path: Path, bootstrap: str) -> None:
    with pytest.raises(cas.InvalidArgumentError, match="bootstrap address"):
        cas.Node(tmp_path / "n", listen="127.0.0.1:0", bootstrap=[bootstrap], network_key=bytes(32))
    assert not (tmp_path / "n").exists()


def test_host_names_stay_allowed_in_bootstrap_addresses(tmp_path: Path) -> None:
    with cas.Node(tmp_path / "n", listen="127.0.0.1:0", bootstrap=["localhost:9"], network_key=bytes(32)) as node:
        assert node.unreachable_bootstrap() == ["localhost:9"]


def test_node_refuses_an_empty_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cas.InvalidArgumentError, match="data_dir"):
        cas.Node("")
    assert list(tmp_path.iterdir()) == [], "no lock or secret in the working directory"


@pytest.mark.parametrize(
    "option,value", [*(("--listen", v) for v in BAD_LISTEN), *(("--bootstrap", v) for v in BAD_BOOTSTRAP)]
)
def test_cas_serve_refuses_a_bad_address_as_a_usage_error(tmp_path: Path, option: str, value: str) -> None:
    result = subprocess.run(
        [*cas_command(), "serve", "--data-dir", str(tmp_path / "n"), option, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert f'"{value}"' in lines[-1] and option.lstrip("-") in lines[-1], result.stderr
    assert not (tmp_path / "n").exists(), "nothing was started"


def test_logs_to_a_file_have_no_colour_codes(tmp_path: Path) -> None:
    program = f"import cas\ncas.Node({str(tmp_path / 'n')!r}, listen='127.0.0.1:0').close()\n"
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CAS_LOG": "info"},
    )
    assert result.returncode == 0, result.stderr
    assert "node started" in result.stderr
    assert "\x1b[" not in result.stderr


def test_a_callback_that_raises_stops_a_put_with_no_temporary_file(
    node: cas.Node, make_file, tmp_path: Path
) -> None:
    path = make_file(40 * 1024 * 1024)

    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        node.put(path, progress=fail)
    left = [p for p in (tmp_path / "node").rglob(".tmp-*")]
    assert left == [], "a worker still wrote for the stopped put"
    assert node.get_bytes(node.put_bytes(b"after")) == b"after"


@pytest.mark.parametrize(
    "kwargs,named",
    [
        ({"gossip_interval": 0}, "gossip_interval 0 ms"),
        ({"request_timeout": -1.0}, "request_timeout -1 s"),
        ({"repair_interval": float("nan")}, "repair_interval NaN s"),
        ({"suspect_after": 5, "dead_after": 1}, "suspect_after"),
        ({"parallelism": 5000}, "parallelism 5000"),
        ({"idle_timeout": 0}, "idle_timeout 0 ms"),
        ({"max_get_bytes": 0}, "max_get_bytes"),
        ({"memory_budget": 64 << 20}, "memory_budget 67108864"),
        ({"placement_diversity": "subnet"}, 'placement_diversity "subnet"'),
        ({"max_inbound": 0}, "max_inbound 0 is out of range"),
        ({"max_handshaking_per_prefix": 0}, "max_handshaking_per_prefix 0 is out of range"),
        ({"max_inbound": 100}, "max_inbound_per_prefix (512) cannot exceed max_inbound (100)"),
        ({"max_inbound_per_address": 600}, "max_inbound_per_address (600) cannot exceed max_inbound_per_prefix (512)"),
        ({"max_handshaking_per_address": 65}, "max_handshaking_per_address (65) cannot exceed max_handshaking_per_prefix (64)"),
        ({"first_message_timeout": 6}, "first_message_timeout (6s) cannot exceed handshake_timeout (5s)"),
        ({"handshake_timeout": 0}, "handshake_timeout 0 ms"),
        ({"liar_penalty": -1.0}, "liar_penalty -1 s"),
        ({"bad_gossip_strikes": 0}, "bad_gossip_strikes 0"),
        ({"bad_gossip_strikes": 1 << 40}, f"bad_gossip_strikes {1 << 40} is out of range"),
    ],
)
def test_node_refuses_bad_timings(tmp_path: Path, kwargs: dict, named: str) -> None:
    with pytest.raises(cas.InvalidArgumentError, match=re.escape(named)):
        cas.Node(tmp_path / "n", **kwargs)
    assert not (tmp_path / "n").exists()


def test_placement_diversity_takes_its_three_values(tmp_path: Path) -> None:
    for value in ("prefix", "address", "none"):
        with cas.Node(tmp_path / value, placement_diversity=value, fsync=False) as node:
            assert node.get_bytes(node.put_bytes(b"diverse")) == b"diverse"
    result = subprocess.run(
        [*cas_command(), "serve", "--data-dir", str(tmp_path / "cli"), "--placement-diversity", "subnet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "placement-diversity" in result.stderr, result.stderr
    assert not (tmp_path / "cli").exists()


def test_memory_budget_is_a_setting_with_its_stats(tmp_path: Path) -> None:
    with cas.Node(tmp_path / "n", listen="127.0.0.1:0", memory_budget=128 << 20, fsync=False) as node:
        stats = node.stats()
        assert (stats.memory_held, stats.connections_over_budget) == (0, 0)
    result = subprocess.run(
        [*cas_command(), "serve", "--data-dir", str(tmp_path / "cli"), "--memory-budget", "64M"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--memory-budget 67108864" in result.stderr, result.stderr
    assert not (tmp_path / "cli").exists()


def test_max_get_bytes_reaches_the_node(tmp_path: Path) -> None:
    with cas.Node(tmp_path / "n", max_get_bytes=100, idle_timeout=5.0, fsync=False) as node:
        small, big = node.put_bytes(b"x" * 100), node.put_bytes(b"y" * 101)
        assert node.get_bytes(small) == b"x" * 100
        with pytest.raises(cas.InvalidArgumentError, match="101"):
            node.get_bytes(big)


def test_max_get_bytes_bounds_reads_into_memory_not_the_caller_buffer(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4
    with cas.Node(tmp_path / "n", max_get_bytes=100, chunk_size=64 * 1024, fsync=False) as node:
        small, big = node.put_bytes(data[:100]), node.put_bytes(data)
        with node.open(small) as f:
            assert f.read() == data[:100], "a file within the limit reads whole"
        with node.open(big) as f:
            buffered = io.BufferedReader(f)
            for read_all in (f.read, f.readall, lambda: f.read(2000), buffered.read):
                with pytest.raises(cas.InvalidArgumentError, match=r"1024 bytes, over max_get_bytes \(100\)"):
                    read_all()
            assert f.tell() == 0 and f.chunks_fetched == 0
            assert f.read(100) == data[:100]
            f.seek(-100, io.SEEK_END)
            assert f.read() == data[-100:], "the rest fits"
            # A buffer the caller sized is filled whatever its size, in pieces.
            f.seek(0)
            buf = bytearray(2000)
            assert f.readinto(buf) == 1024 and buf[:1024] == data
            f.seek(24)
            assert io.BufferedReader(f, buffer_size=64).read(1000) == data[24:]


def test_timings_reach_the_node(tmp_path: Path) -> None:
    # With the defaults a silent peer is dead after 10 s; here after 0.6 s.
    fast = {"gossip_interval": 0.1, "suspect_after": 0.3, "dead_after": 0.6, "forget_after": 60.0}
    key = cas.generate_network_key()
    with cas.Node(tmp_path / "a", listen="127.0.0.1:0", network_key=key, **fast) as a:
        b = cas.Node(tmp_path / "b", listen="127.0.0.1:0", bootstrap=[a.address], network_key=key, **fast)
        try:
            wait_until(lambda: [p.state for p in a.peers()] == ["alive"], timeout=10, what="b alive on a")
        finally:
            b.close()
        wait_until(lambda: [p.state for p in a.peers()] == ["dead"], timeout=5, what="b dead on a within 5 s")


def _idle_sockets_until_evicted(evicted_so_far, address: str, count: int, evicted: int) -> None:
    """Opens `count` idle TCP connections to `address` and waits until the
    node's count of seats given up, `evicted_so_far()`, reaches `evicted`."""
    import socket

    host, port = address.rsplit(":", 1)
    sockets = [socket.create_connection((host, int(port)), timeout=10) for _ in range(count)]
    try:
        wait_until(lambda: evicted_so_far() >= evicted, timeout=10, what=f"{evicted} seats given up")
        assert evicted_so_far() == evicted
    finally:
        for s in sockets:
            s.close()


def test_limits_reach_the_node(tmp_path: Path) -> None:
    # One handshaking seat per address: of 3 idle connections from 127.0.0.1,
    # the 2 oldest give theirs up at once (the default allows 16).
    limits = {
        "max_handshaking": 8,
        "max_handshaking_per_address": 1,
        "max_handshaking_per_prefix": 2,
        "first_message_timeout": 30.0,
        "handshake_timeout": 60.0,
        "max_inbound": 4,
        "max_inbound_per_address": 2,
        "max_inbound_per_prefix": 4,
        "bad_gossip_strikes": 1,
        "liar_penalty": 1.5,
    }
    with cas.Node(tmp_path / "n", listen="127.0.0.1:0", fsync=False, **limits) as node:
        _idle_sockets_until_evicted(lambda: node.stats().connections_evicted, node.address, 3, 2)
        assert node.get_bytes(node.put_bytes(b"limited")) == b"limited"


def test_cas_serve_takes_the_limits(serve) -> None:
    server = serve(
        "node",
        *("--max-handshaking", 8, "--max-handshaking-per-address", 1, "--max-handshaking-per-prefix", 2),
        *("--first-message-timeout", 30, "--handshake-timeout", 60, "--bad-gossip-strikes", 3, "--liar-penalty", 60),
        *("--max-inbound", 4, "--max-inbound-per-address", 2, "--max-inbound-per-prefix", 4),
    )
    status = lambda: cas_json("status", "--data-dir", server.data_dir)  # noqa: E731
    _idle_sockets_until_evicted(lambda: status()["stats"]["connections_evicted"], status()["address"], 3, 2)
    help_text = run_cas("serve", "--help").stdout
    for option, default in [
        ("--max-handshaking", 256),
        ("--max-handshaking-per-address", 16),
        ("--max-handshaking-per-prefix", 64),
        ("--first-message-timeout", 1),
        ("--handshake-timeout", 5),
        ("--max-inbound", 1024),
        ("--max-inbound-per-address", 256),
        ("--max-inbound-per-prefix", 512),
        ("--bad-gossip-strikes", 2),
        ("--liar-penalty", 600),
    ]:
        assert re.search(rf"{option} (N|SECONDS)\s+[^-]*?\(default {default}\)", help_text), (option, help_text)
