"""The network key and the advertised address, from Python and the command
line: only holders of a network's key join it, and errors say what to do."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest

import cas
from conftest import cas_command, cas_json, fixed_port, network_key_file, run_cas, wait_until


def test_generate_network_key_is_32_fresh_bytes() -> None:
    a, b = cas.generate_network_key(), cas.generate_network_key()
    assert isinstance(a, bytes) and len(a) == 32 and a != b


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"listen": "127.0.0.1:0", "network_key": b"short"}, "network_key must be exactly 32 bytes"),
        ({"listen": "0.0.0.0:0"}, "advertise"),
        ({"listen": "0.0.0.0:0", "advertise": "127.0.0.1:0"}, "loopback"),
        ({"listen": "127.0.0.1:0", "bootstrap": ["127.0.0.1:9"]}, "network key"),
    ],
)
def test_bad_network_settings(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(cas.InvalidArgumentError, match=match):
        cas.Node(tmp_path / "n", fsync=False, **kwargs)


def test_the_first_node_makes_the_key_and_others_join_with_it(nodes, tmp_path: Path) -> None:
    first = nodes("first", listen="127.0.0.1:0")
    key_file = Path(first.data_dir) / "network_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    with pytest.raises(cas.NetworkError, match="wrong or missing network key"):
        nodes("stranger", listen="127.0.0.1:0", bootstrap=[first.address], network_key=cas.generate_network_key())
    member = nodes("member", listen="127.0.0.1:0", bootstrap=[first.address], network_key=key)
    wait_until(lambda: len(first.peers()) == 1 and len(member.peers()) == 1, what="the member to join")
    assert member.get_bytes(first.put_bytes(b"for members")) == b"for members"


def test_cas_keygen_writes_an_owner_only_key_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "net.key"
    assert cas_json("keygen", path) == {"network_key": str(path)}
    assert len(path.read_bytes()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    again = run_cas("keygen", path, check=False)
    assert again.returncode == 1 and "exists already" in again.stderr
    assert path.read_bytes() == before


def serve_exits_with(args: list, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cas_command(), "serve", "--data-dir", str(tmp_path / "joiner"), "--no-fsync", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cas_serve_refuses_to_join_without_the_right_key(serve, tmp_path: Path) -> None:
    key = network_key_file(tmp_path)
    first = serve("first", "--listen", "127.0.0.1:0", "--network-key", key)

    missing = serve_exits_with(["--bootstrap", first.address], tmp_path)
    assert missing.returncode == 2  # a usage error: the command needs --network-key
    assert "no network key" in missing.stderr and "--network-key" in missing.stderr

    wrong = tmp_path / "wrong.key"
    run_cas("keygen", wrong)
    refused = serve_exits_with(["--bootstrap", first.address, "--network-key", wrong], tmp_path)
    assert refused.returncode == 1 and "wrong or missing network key" in refused.stderr

    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789")
    bad = serve_exits_with(["--bootstrap", first.address, "--network-key", short], tmp_path)
    assert bad.returncode == 2 and "holds 10 bytes" in bad.stderr

    joined = serve("joiner", "--listen", "127.0.0.1:0", "--bootstrap", first.address, "--network-key", key)
    wait_until(lambda: len(cas_json("peers", "--data-dir", joined.data_dir)["peers"]) == 1, what="the join")


@pytest.mark.parametrize(
    "listen, error, match",
    [
        ("nonsense", cas.InvalidArgumentError, "expected HOST:PORT"),
        ("127.0.0.1:99999", cas.InvalidArgumentError, "expected HOST:PORT"),
        ("192.0.2.1:0", cas.NetworkError, "not one of this machine's"),
    ],
)
def test_a_bad_listen_address_says_what_is_wrong(tmp_path: Path, listen: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        cas.Node(tmp_path / "n", listen=listen, fsync=False)


def test_a_listen_port_in_use_says_so(nodes, tmp_path: Path) -> None:
    first = nodes("first", listen="127.0.0.1:0")
    with pytest.raises(cas.NetworkError, match="another process has that port"):
        cas.Node(tmp_path / "second", listen=first.address, fsync=False)


def dead_address() -> str:
    """An address on 127.0.0.1 that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_an_unreachable_bootstrap_address_is_reported(tmp_path: Path) -> None:
    dead = dead_address()
    data_dir, log = tmp_path / "lonely", tmp_path / "serve.log"
    key = network_key_file(tmp_path)
    argv = [*cas_command(), "serve", "--data-dir", str(data_dir), "--no-fsync", "--network-key", str(key)]
    with open(log, "w") as err:
        process = subprocess.Popen([*argv, "--bootstrap", dead], stdout=subprocess.DEVNULL, stderr=err)
    try:
        status = wait_until(
            lambda: (r := run_cas("status", "--data-dir", data_dir, "--json", check=False)).returncode == 0
            and json.loads(r.stdout),
            what="the node to answer",
        )
        assert status["unreachable_bootstrap"] == [dead]
        assert f"bootstrap {dead} unreachable" in run_cas("status", "--data-dir", data_dir).stdout
        wait_until(lambda: "cannot reach bootstrap node" in log.read_text(), what="a warning in the log")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--listen", "0.0.0.0:7123"], "--advertise"),
        (["--bootstrap", "127.0.0.1:9"], "no network key"),
    ],
    ids=["every-interface-without-advertise", "joining-without-a-key"],
)
@pytest.mark.parametrize("existed", [False, True], ids=["absent", "empty"])
def test_a_refused_cas_serve_leaves_its_data_directory_as_it_was(
    tmp_path: Path, args: list, match: str, existed: bool
) -> None:
    data_dir = tmp_path / "joiner"
    if existed:
        data_dir.mkdir()
    refused = serve_exits_with(args, tmp_path)
    assert refused.returncode == 2 and match in refused.stderr, refused.stderr
    assert "created a new network key" not in refused.stderr
    assert "`--" not in refused.stderr and "/--" not in refused.stderr, f"a file named as an option: {refused.stderr}"
    if existed:
        assert sorted(p.name for p in data_dir.iterdir()) == []
    else:
        assert not data_dir.exists(), sorted(p.name for p in data_dir.iterdir())


def test_a_node_every_reachable_bootstrap_refuses_stops(serve, tmp_path: Path) -> None:
    good = serve("good", "--listen", "127.0.0.1:0", "--network-key", network_key_file(tmp_path))
    other_key = tmp_path / "other.key"
    run_cas("keygen", other_key)
    dead = dead_address()
    refused = serve_exits_with(["--bootstrap", dead, good.address, "--network-key", other_key], tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert f"{good.address}: wrong or missing network key" in refused.stderr, refused.stderr
    assert dead in refused.stderr and "still trying" not in refused.stderr, refused.stderr


def test_a_key_refusal_is_final_for_its_address_and_said_once(serve, tmp_path: Path) -> None:
    stranger = serve("stranger", "--listen", "127.0.0.1:0", "--network-key", network_key_file(tmp_path))
    ours = tmp_path / "ours.key"
    run_cas("keygen", ours)
    member = serve("member", "--listen", "127.0.0.1:0", "--network-key", ours)
    log = tmp_path / "joiner.log"
    argv = [*cas_command(), "serve", "--data-dir", str(tmp_path / "joiner"), "--no-fsync", "--network-key", str(ours)]
    with open(log, "w") as err:
        process = subprocess.Popen(
            [*argv, "--gossip-interval", "0.1", "--bootstrap", stranger.address, member.address],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until(
            lambda: (r := run_cas("peers", "--data-dir", tmp_path / "joiner", "--json", check=False)).returncode == 0
            and len(json.loads(r.stdout)["peers"]) == 1,
            what="the joiner to join the member",
        )
        wait_until(lambda: "refused this node's network key" in log.read_text(), what="the refusal in the log")
        # An observation window, not a wait for something: ten gossip rounds,
        # in which an address still being retried would be tried again.
        time.sleep(1.0)
        refusals = [line for line in log.read_text().splitlines() if "network key" in line]
        assert len(refusals) == 1 and stranger.address in refusals[0], refusals
        assert "still trying" not in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cas_serve_says_where_the_network_key_it_made_is(tmp_path: Path) -> None:
    data_dir = tmp_path / "first"
    process = subprocess.Popen(
        [*cas_command(), "serve", "--data-dir", str(data_dir), "--no-fsync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"created a new network key, {data_dir / 'network_key'}:" in first, first
        assert "serving" in process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
    restarted = subprocess.Popen(
        [*cas_command(), "serve", "--data-dir", str(data_dir), "--no-fsync", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert restarted.stdout is not None
        assert "created_network_key" not in json.loads(restarted.stdout.readline())
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)


def test_a_node_stops_when_its_bootstrap_node_comes_up_and_refuses_its_key(tmp_path: Path) -> None:
    address = f"127.0.0.1:{fixed_port()}"
    other_key = tmp_path / "other.key"
    run_cas("keygen", other_key)
    argv = [*cas_command(), "serve", "--no-fsync", "--gossip-interval", "0.1"]
    joiner = subprocess.Popen(
        [*argv, "--data-dir", str(tmp_path / "joiner"), "--network-key", str(network_key_file(tmp_path)),
         "--bootstrap", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stranger = None
    try:
        # Started, still trying an address where nothing listens yet.
        wait_until(
            lambda: run_cas("status", "--data-dir", tmp_path / "joiner", check=False).returncode == 0,
            what="the joiner to start",
        )
        stranger = subprocess.Popen(
            [*argv, "--data-dir", str(tmp_path / "stranger"), "--listen", address, "--network-key", str(other_key)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, stderr = joiner.communicate(timeout=120)
        assert joiner.returncode == 1, stderr
        assert f"{address} refused this node's network key, and no other node answered" in stderr, stderr
    finally:
        for process in (joiner, stranger):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
