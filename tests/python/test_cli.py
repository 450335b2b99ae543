"""The `cas` command against one `cas serve` process (no networking needed)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import cas_command, cas_json, run_cas, sha256_of, wait_until


def test_serve_put_get_stat_status(serve, make_file, tmp_path: Path) -> None:
    server = serve("node")
    d = server.data_dir
    sock = d / "control.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    status = cas_json("status", "--data-dir", d)
    assert len(status["id"]) == 64 and status["pid"] == server.process.pid
    assert status["data_dir"] == str(d)
    assert status["stats"]["blobs_stored"] == 0

    src = make_file(3 << 20)
    plain = run_cas("put", src, "--data-dir", d)
    key = plain.stdout.strip()
    assert key.startswith("cas1") and plain.stdout.count("\n") == 1
    # A node alone cannot make copies elsewhere: the put says so, and succeeds.
    assert "warning" in plain.stderr and "0 of 3 copies on other nodes" in plain.stderr, plain.stderr
    put = cas_json("put", src, "--data-dir", d)
    assert put == {
        "key": key,
        "path": str(src),
        "size": 3 << 20,
        "chunks": 3,
        "new_blobs": 0,
        "replicas": 0,
        "replicas_wanted": 3,
    }

    dest = tmp_path / "copy.bin"
    got = cas_json("get", key, dest, "--data-dir", d)
    assert got == {"key": key, "dest": str(dest), "size": 3 << 20}
    assert sha256_of(dest) == sha256_of(src)

    # Without DEST the bytes go to standard output.
    streamed = subprocess.run([*cas_command(), "get", key, "--data-dir", str(d)], capture_output=True, timeout=60)
    assert streamed.returncode == 0 and streamed.stdout == src.read_bytes()

    info = cas_json("stat", key, "--data-dir", d)
    assert info["size"] == 3 << 20 and info["key"] == key
    assert info["nodes"] == [{"id": status["id"], "address": status["address"], "self": True}]
    assert all(h["nodes"] == [status["id"]] for h in info["holders"])
    assert "held by" in run_cas("stat", key, "--data-dir", d).stdout

    # The catalog: the file put twice under one name is listed once.
    files = cas_json("ls", "--data-dir", d)["files"]
    assert [(f["key"], f["name"], f["size"]) for f in files] == [(key, src.name, 3 << 20)]
    listing = run_cas("ls", "--data-dir", d).stdout
    assert src.name in listing and key in listing and "3.0 MiB" in listing

    assert cas_json("peers", "--data-dir", d) == {"self": {"id": status["id"], "address": status["address"]}, "peers": []}
    assert cas_json("status", "--data-dir", d)["stats"]["blobs_stored"] > 0
    assert status["id"] in run_cas("status", "--data-dir", d).stdout
    assert "corrupt" in run_cas("status", "--data-dir", d).stdout


def test_relative_paths_are_resolved_by_the_client(serve, tmp_path: Path) -> None:
    server = serve("node")
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("relative\n")

    def cas_in_work(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [*cas_command(), *args, "--data-dir", str(server.data_dir)]
        return subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=60)

    key = cas_in_work("put", "in.txt")
    assert key.returncode == 0, key.stderr
    got = cas_in_work("get", key.stdout.strip(), "out.txt")
    assert got.returncode == 0, got.stderr
    assert (work / "out.txt").read_text() == "relative\n"


def test_data_dir_from_environment(serve, tmp_path: Path) -> None:
    server = serve("envnode")
    env = {**os.environ, "CAS_DATA_DIR": str(server.data_dir)}
    result = subprocess.run([*cas_command(), "status", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data_dir"] == str(server.data_dir)


def test_no_node_running(tmp_path: Path) -> None:
    empty = tmp_path / "nobody-home"
    key = "cas1" + "a" * 103  # well formed
    for args in (["status"], ["peers"], ["put", __file__], ["get", key, str(tmp_path / "x")], ["stat", key]):
        result = run_cas(*args, "--data-dir", empty, check=False)
        assert result.returncode == 3, result
        assert "no CAS node is running" in result.stderr
        assert f"cas serve --data-dir {empty}" in result.stderr
    result = run_cas("status", "--data-dir", empty, "--json", check=False)
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["type"] == "NoNodeRunningError"
    assert not (tmp_path / "x").exists()


def test_errors_through_the_socket(serve, tmp_path: Path) -> None:
    d = serve("node").data_dir
    bad = run_cas("get", "not-a-key", tmp_path / "out", "--data-dir", d, check=False)
    assert bad.returncode == 2 and "invalid key" in bad.stderr  # bad usage
    as_json = run_cas("stat", "cas1abc", "--data-dir", d, "--json", check=False)
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["type"] == "InvalidKeyError"
    missing = run_cas("put", tmp_path / "missing.bin", "--data-dir", d, check=False)
    assert missing.returncode == 1 and "missing.bin" in missing.stderr
    assert not (tmp_path / "out").exists()


def test_second_serve_on_the_same_data_dir_fails(serve) -> None:
    server = serve("node")
    second = run_cas("serve", "--data-dir", server.data_dir, check=False, timeout=60)
    assert second.returncode == 1
    assert "in use by another CAS process" in second.stderr
    # The first one still answers.
    assert cas_json("status", "--data-dir", server.data_dir)["pid"] == server.process.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signals(serve, sig: int) -> None:
    server = serve("node")
    assert server.stop(sig) == 0
    assert not (server.data_dir / "control.sock").exists()
    # The data directory was released: it can be served again.
    again = serve("node")
    assert cas_json("status", "--data-dir", again.data_dir)["id"] == server.id


def test_stale_socket_after_kill_9(serve) -> None:
    server = serve("node")
    server.stop(signal.SIGKILL)
    assert (server.data_dir / "control.sock").exists()  # left behind by the killed process
    result = run_cas("status", "--data-dir", server.data_dir, check=False)
    assert result.returncode == 3 and "no CAS node is running" in result.stderr
    again = serve("node")
    wait_until(lambda: cas_json("status", "--data-dir", again.data_dir)["pid"] == again.process.pid)


def test_usage_errors() -> None:
    assert run_cas(check=False).returncode == 2
    assert run_cas("put", check=False).returncode == 2
    assert "serve" in run_cas("--help").stdout


def test_version() -> None:
    import cas

    assert run_cas("--version").stdout.strip() == f"cas {cas.__version__}"


def test_distribution_is_cas_p2p_with_import_name_and_command_cas() -> None:
    """`cas` on the Python package index is another project: ours is `cas-p2p`."""
    from importlib import metadata

    import cas

    dist = metadata.distribution("cas-p2p")
    assert dist.version == cas.__version__
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"cas": "cas.cli:main"}
    assert any(str(f).startswith("cas/") for f in dist.files or [])


NUMBERS = ["-1", "many", "1.5", "", str(1 << 64)]
# Every option of every subcommand, with values it must refuse.
BAD_OPTIONS = [
    *[("serve", option, value) for option in ("--replicas", "--min-replicas", "--capacity") for value in NUMBERS],
    *[("serve", "--chunk-size", value) for value in [*NUMBERS, "1000", "0", str(32 << 20), "3K", "32M", "1MB", "1.5M", "M"]],
    *[("serve", option, value) for option in ("--capacity", "--scrub-rate") for value in ["10GB", "1X", "G", "1 K B"]],
    *[("serve", "--listen", value) for value in ["garbage", "", "127.0.0.1", "127.0.0.1:99999"]],
    *[("serve", "--advertise", value) for value in ["garbage", "", ":7000", "host:port", "::1:7000"]],
    *[("serve", "--bootstrap", value) for value in ["garbage", "", "127.0.0.1:0", "127.0.0.1:99999", "a b:7000"]],
    *[("serve", option, value) for option in ("--gossip-interval", "--dead-after", "--repair-interval")
      for value in ["0", "-1", "soon", "nan", "inf"]],
    *[("serve", option, value) for option in ("--max-inbound", "--max-handshaking-per-address")
      for value in [*NUMBERS, "0"]],
    *[("serve", option, value) for option in ("--first-message-timeout", "--liar-penalty") for value in ["0", "-1", "soon"]],
    ("serve", "--bad-gossip-strikes", "0"),
    ("serve", "--bad-gossip-strikes", str(1 << 40)),
    ("serve", "--request-timeout", "1e12"),  # past the node's range (a year)
    ("serve", "--scrub-rate", "-5"),
    ("serve", "--parallelism", "100000"),
    ("serve", "--network-key", ""),
    ("serve", "--network-key", "/nonexistent/net.key"),
    ("serve", "--network-key", __file__),  # not 32 bytes
    ("serve", "--data-dir", ""),
    ("status", "--data-dir", ""),
    ("get", "-o", ""),
    ("serve", "--no-such-option", "1"),
]


@pytest.mark.parametrize("command, option, value", BAD_OPTIONS)
def test_every_option_refuses_bad_values_in_one_line(tmp_path: Path, command: str, option: str, value: str) -> None:
    args = [command, option, value]
    if option != "--data-dir":
        args += ["--data-dir", tmp_path / "n"]
    if command == "get":
        args.insert(1, "cas1x")
    result = run_cas(*args, check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    setting = option.lstrip("-").replace("-", "_")  # the node names its settings so
    assert option in lines[0] or setting in lines[0] or value and value in lines[0], lines[0]
    assert not (tmp_path / "n").exists(), "nothing was started"


@pytest.mark.parametrize(
    "options, says",
    [
        (["--replicas", "2", "--min-replicas", "3"], "--min-replicas 3 cannot exceed --replicas 2"),
        (["--suspect-after", "5", "--dead-after", "2"], "--suspect-after 5s <= --dead-after 2s <= --forget-after 120s"),
        (["--chunk-size", "96K"], "--chunk-size 98304 must be a power of two"),
        (["--max-inbound", "100"], "--max-inbound-per-prefix 512 cannot exceed --max-inbound 100"),
        (
            ["--max-handshaking-per-address", "65"],
            "--max-handshaking-per-address 65 cannot exceed --max-handshaking-per-prefix 64",
        ),
        (["--first-message-timeout", "6"], "--first-message-timeout 6s cannot exceed --handshake-timeout 5s"),
    ],
)
def test_settings_the_node_refuses_are_named_by_their_options(tmp_path: Path, options: list, says: str) -> None:
    result = run_cas("serve", "--data-dir", tmp_path / "n", *options, check=False)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert "_" not in result.stderr.replace(str(tmp_path), ""), f"a setting's own name: {result.stderr}"
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "n").exists(), "nothing was started"



def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    # No node can run on a data directory that is a regular file: a clear
    # "no node" error (and JSON with --json), not a Python traceback.
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("not a directory\n")
    result = run_cas("status", "--data-dir", not_a_dir, "--json", check=False)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["error"]["type"] == "NoNodeRunningError"


def test_get_to_stdout_reports_a_failure_in_the_middle(serve, make_file) -> None:
    server = serve("node", "--chunk-size", 65536)
    d = server.data_dir
    src = make_file(4 * 65536)
    key = run_cas("put", src, "--data-dir", d).stdout.strip()
    holders = cas_json("stat", key, "--data-dir", d)["holders"]
    # Corrupt the last chunk on disk: the stream fails after its header and
    # the first chunks were sent.
    last = holders[-1]["blob"]
    blob = d / "blobs" / last[:2] / last
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    result = subprocess.run([*cas_command(), "get", key, "--data-dir", str(d)], capture_output=True, timeout=60)
    assert result.returncode == 1
    # Standard output holds file bytes only (a prefix of the file), never a
    # protocol message, and the error says what really failed.
    assert src.read_bytes().startswith(result.stdout)
    assert b'"ok"' not in result.stdout
    assert b"integrity" in result.stderr.lower() or b"verification" in result.stderr.lower(), result.stderr


def test_a_client_that_goes_away_ends_its_download(serve, make_file, tmp_path: Path) -> None:
    """A client that drops the connection part way through a download (as
    Ctrl-C does) ends that request on the node: it is counted done, and
    nothing stays in progress."""
    import socket as socket_module

    server = serve("node", "--chunk-size", 65536)
    d = server.data_dir
    src = make_file(64 * 65536)
    key = run_cas("put", src, "--data-dir", d).stdout.strip()
    done_before = cas_json("status", "--data-dir", d)["requests_done"]

    client = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    client.connect(str(d / "control.sock"))
    client.sendall(f"GET /cas/{key} HTTP/1.1\r\nHost: cas\r\n\r\n".encode())
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    client.close()

    status = wait_until(
        lambda: (lambda s: s if s["requests_done"] > done_before else None)(cas_json("status", "--data-dir", d)),
        timeout=60,
        what="the node to finish with the abandoned download",
    )
    assert status["requests_in_progress"] == 0


def test_ctrl_c_on_cas_get_after_the_last_byte_leaves_nothing(serve, make_file, tmp_path: Path) -> None:
    """Ctrl-C on a real `cas get` held (by its test hook) between its last
    byte and its rename into place: the command says it was interrupted,
    exits 130, and nothing is at DEST."""
    hook = tmp_path / "hook"
    hook.mkdir()
    server = serve("node", "--chunk-size", 65536)
    d = server.data_dir
    src = make_file(16 * 65536)
    key = run_cas("put", src, "--data-dir", d).stdout.strip()
    dest = tmp_path / "interrupted.bin"
    client = subprocess.Popen(
        [*cas_command(), "get", key, str(dest), "--data-dir", str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CAS_TEST_PAUSE_BEFORE_COMMIT": str(hook)},
    )
    try:
        wait_until(lambda: (hook / "paused").exists(), timeout=60, what="the get to reach its commit")
        client.send_signal(signal.SIGINT)
        _, stderr = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".cas-get-")] == []
    # The node is idle again and gives the file.
    assert cas_json("status", "--data-dir", d)["requests_in_progress"] == 0
    run_cas("get", key, dest, "--data-dir", d)
    assert dest.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("misbehaviour", ["garbage", "hangs-up"])
def test_a_node_answering_nonsense_gets_a_clear_error_not_a_traceback(tmp_path: Path, misbehaviour: str) -> None:
    import socket as socket_module
    import threading

    d = tmp_path / "fake"
    d.mkdir()
    listener = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    listener.bind(str(d / "control.sock"))
    listener.listen(1)

    def answer_once() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        if misbehaviour == "garbage":
            conn.sendall(b"this is not json\n")
        conn.close()  # hangs up without answering

    fake = threading.Thread(target=answer_once, daemon=True)
    fake.start()
    result = run_cas("status", "--data-dir", d, "--json", check=False, timeout=60)
    fake.join(timeout=30)
    listener.close()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["error"]["message"]
    assert result.stderr.startswith("cas: error:"), result.stderr


def test_get_never_replaces_a_file_without_force(serve, tmp_path: Path) -> None:
    server = serve("node")
    d = server.data_dir
    key = cas_json("put", Path(__file__), "--data-dir", d)["key"]
    dest = tmp_path / "precious.txt"
    dest.write_text("do not lose me\n")
    refused = run_cas("get", key, dest, "--data-dir", d, check=False)
    assert refused.returncode == 1 and "exists already; --force replaces it" in refused.stderr
    assert dest.read_text() == "do not lose me\n"
    run_cas("get", key, dest, "--force", "--data-dir", d)
    assert dest.read_bytes() == Path(__file__).read_bytes()
    run_cas("get", key, "-o", tmp_path / "via-o.txt", "--data-dir", d)
    assert (tmp_path / "via-o.txt").read_bytes() == Path(__file__).read_bytes()
    both = run_cas("get", key, dest, "-o", tmp_path / "x", "--data-dir", d, check=False)
    assert both.returncode == 2 and "not both" in both.stderr


def test_get_does_not_write_binary_to_a_terminal_unless_asked(serve, tmp_path: Path) -> None:
    import pty

    server = serve("node")
    d = server.data_dir
    small = tmp_path / "small.txt"
    small.write_text("a few bytes for the terminal\n")  # well under a pty's buffer
    key = cas_json("put", small, "--data-dir", d)["key"]
    master, slave = pty.openpty()
    try:
        refused = subprocess.run(
            [*cas_command(), "get", key, "--data-dir", str(d)], stdout=slave, stderr=subprocess.PIPE, text=True, timeout=60
        )
        assert refused.returncode == 2 and "-o -" in refused.stderr
        asked = subprocess.run(
            [*cas_command(), "get", key, "-o", "-", "--data-dir", str(d)], stdout=slave, stderr=subprocess.PIPE, timeout=60
        )
        assert asked.returncode == 0
        os.set_blocking(master, False)
        got = b""
        while True:
            try:
                block = os.read(master, 1 << 16)
            except BlockingIOError:
                break
            got += block
        assert b"a few bytes for the terminal" in got
    finally:
        os.close(master)
        os.close(slave)


def _requests_done(d: Path) -> int:
    return cas_json("status", "--data-dir", d)["requests_done"]


def _ask_socket(d: Path, request: bytes) -> bytes:
    """One raw HTTP/1.1 request (with Connection: close) on the control
    socket of `d`; the whole answer."""
    import socket as socket_module

    client = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    try:
        client.connect(str(d / "control.sock"))
        client.sendall(request)
        answer = b""
        while block := client.recv(65536):
            answer += block
        return answer
    finally:
        client.close()


def _post_unnamed(d: Path, data: bytes) -> str:
    """Stores `data` through the control socket without a name (as a client
    other than `cas put` may): the catalog knows no name for it."""
    head = b"POST /cas HTTP/1.1\r\nHost: cas\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(data)
    answer = _ask_socket(d, head + data)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return json.loads(answer.partition(b"\r\n\r\n")[2])["key"]


def test_get_into_a_directory_uses_the_files_name(serve, make_file, tmp_path: Path) -> None:
    """`cas get KEY DIR` (and `cas get KEY .`) writes the file inside DIR, as
    cp does, under the name it was put with; a key the node knows no name
    for is written under the key itself."""
    d = serve("node").data_dir
    src = make_file(100_000, name="report.pdf")
    key = run_cas("put", src, "--data-dir", d).stdout.strip()
    run_cas("put", make_file(10, name="later.txt"), "--data-dir", d)  # another file, listed after it
    into = tmp_path / "downloads"
    into.mkdir()

    got = cas_json("get", key, into, "--data-dir", d)
    assert got == {"key": key, "dest": str(into / "report.pdf"), "size": 100_000}
    assert (into / "report.pdf").read_bytes() == src.read_bytes()

    work = tmp_path / "work"
    work.mkdir()
    here = subprocess.run(
        [*cas_command(), "get", key, ".", "--data-dir", str(d)], cwd=work, capture_output=True, text=True, timeout=60
    )
    assert here.returncode == 0, here.stderr
    assert (work / "report.pdf").read_bytes() == src.read_bytes()

    # Already there: refused without --force, replaced with it.
    again = run_cas("get", key, into, "--data-dir", d, check=False)
    assert again.returncode == 1 and "exists already; --force replaces it" in again.stderr, again.stderr
    (into / "report.pdf").write_text("old\n")
    run_cas("get", key, f"{into}/", "--force", "--data-dir", d)
    assert (into / "report.pdf").read_bytes() == src.read_bytes()

    unnamed = _post_unnamed(d, b"no name given\n")
    run_cas("get", unnamed, into, "--data-dir", d)
    assert (into / unnamed).read_bytes() == b"no name given\n"
    assert sorted(p.name for p in into.iterdir()) == sorted(["report.pdf", unnamed])


def test_get_destination_problems_are_one_line_errors_before_the_download(serve, tmp_path: Path) -> None:
    d = serve("node").data_dir
    src = tmp_path / "notes.txt"
    src.write_text("notes\n")
    key = run_cas("put", src, "--data-dir", d).stdout.strip()
    into = tmp_path / "into"
    (into / "notes.txt").mkdir(parents=True)  # a directory where the file would go
    plain_file = tmp_path / "plain"
    plain_file.write_text("x")
    cases = [
        # (DEST, what the error says, requests the check may make: the name's lookup)
        (str(into), "is a directory", 1),
        (str(tmp_path / "missing" / "out.txt"), "does not exist", 0),
        (str(plain_file / "out.txt"), "is not a directory", 0),
        (str(tmp_path / "newdir") + "/", "no such directory", 0),
    ]
    for dest, says, lookups in cases:
        for force in ([], ["--force"]):
            before = _requests_done(d)
            result = run_cas("get", key, dest, *force, "--data-dir", d, check=False)
            assert result.returncode == 1, (dest, result.stderr)
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert says in result.stderr, (dest, result.stderr)
            assert _requests_done(d) - before == lookups, f"{dest}: the download was started"
            as_json = run_cas("get", key, dest, *force, "--json", "--data-dir", d, check=False)
            assert as_json.returncode == 1 and "Traceback" not in as_json.stderr
            assert json.loads(as_json.stdout)["error"]["type"] == "DestinationError"
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "missing").exists()
    assert [p.name for p in into.iterdir()] == ["notes.txt"] and not any((into / "notes.txt").iterdir())

    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        result = run_cas("get", key, locked, "--data-dir", d, check=False)
        assert result.returncode == 1 and "no permission" in result.stderr, result.stderr


def test_a_pasted_key_with_whitespace_around_it_works_everywhere(serve, tmp_path: Path) -> None:
    """A key copied with a trailing space or newline is accepted by the CLI,
    the HTTP API and the Python module alike; a typo inside it is not
    found, and the message shows the part of the key the typo is in."""
    import urllib.parse

    import cas

    d = serve("node").data_dir
    src = tmp_path / "pasted.txt"
    src.write_text("pasted keys\n")
    key = run_cas("put", src, "--data-dir", d).stdout.strip()

    for pasted in (f"{key} ", f"{key}\n", f" \t{key}\r\n"):
        dest = tmp_path / "out.txt"
        got = cas_json("get", pasted, dest, "--force", "--data-dir", d)
        assert got["key"] == key and dest.read_text() == "pasted keys\n"
        assert cas_json("stat", pasted, "--data-dir", d)["key"] == key
        streamed = run_cas("get", pasted, "-o", "-", "--data-dir", d)
        assert streamed.stdout == "pasted keys\n"
    into = tmp_path / "into"
    into.mkdir()
    run_cas("get", f"{key}\n", into, "--data-dir", d)
    assert (into / "pasted.txt").read_text() == "pasted keys\n"

    # HTTP: GET /cas/{key} with the whitespace percent-encoded in the path.
    path = urllib.parse.quote(f"{key}\n ", safe="")
    answer = _ask_socket(d, f"GET /cas/{path} HTTP/1.1\r\nHost: cas\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\npasted keys\n"), answer[:200]

    # Python: a node in this process.
    with cas.Node(tmp_path / "py-node") as node:
        own = node.put_bytes(b"python too\n")
        assert node.get_bytes(f"{own}\n") == b"python too\n"
        assert node.stat(f" {own} ").size == 11
        with node.open(f"{own}\r\n") as f:
            assert f.read() == b"python too\n"

    # Whitespace inside a key is still refused, with where it is.
    inside = run_cas("get", f"{key[:20]} {key[20:]}", tmp_path / "x", "--data-dir", d, check=False)
    assert "whitespace at position 20" in inside.stderr, inside.stderr

    typo = key[:30] + ("b" if key[30] != "b" else "c") + key[31:]
    missing = run_cas("get", typo, tmp_path / "typo.txt", "--data-dir", d, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr, missing.stderr
    # All the characters that name the manifest (where a typo makes a key
    # unknown) are shown; the secret rest is not.
    assert f"key {typo[:56]}…" in missing.stderr and typo[60:] not in missing.stderr, missing.stderr
    assert not (tmp_path / "typo.txt").exists()


def test_sizes_take_suffixes_as_powers_of_two(serve, make_file) -> None:
    src = make_file(200 * 1024)
    for given, chunk_size in (("64K", 64 << 10), ("128KiB", 128 << 10), ("1m", 1 << 20), ("262144", 256 << 10)):
        server = serve(f"node-{given}", "--chunk-size", given, "--capacity", "10G", "--scrub-rate", "2M")
        key = run_cas("put", src, "--data-dir", server.data_dir).stdout.strip()
        info = cas_json("stat", key, "--data-dir", server.data_dir)
        assert (info["chunk_size"], info["chunks"]) == (chunk_size, -(-src.stat().st_size // chunk_size)), given
        server.stop()


def test_a_capacity_with_a_suffix_is_enforced(serve, make_file) -> None:
    server = serve("small", "--capacity", "1M", "--chunk-size", "64K")
    run_cas("put", make_file(512 << 10), "--data-dir", server.data_dir)
    result = run_cas("put", make_file(2 << 20), "--data-dir", server.data_dir, check=False)
    assert result.returncode == 1 and "capacity of 1048576 bytes reached" in result.stderr, result.stderr


def test_put_streams_standard_input(serve, make_file, tmp_path: Path) -> None:
    """`cas put -` sends standard input as it comes (the upload starts before
    the input ends), under the name given by --name."""
    d = serve("node", "--chunk-size", "64K").data_dir
    data = os.urandom(3 * 65536 + 5)
    writer = subprocess.Popen(
        [*cas_command(), "put", "-", "--name", "piped.bin", "--json", "--data-dir", str(d)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert writer.stdin is not None
        writer.stdin.write(data[:65536])
        writer.stdin.flush()
        # The upload is under way while standard input is still open.
        wait_until(
            lambda: cas_json("status", "--data-dir", d)["requests_in_progress"] == 1,
            timeout=60,
            what="the upload to start before the input ends",
        )
        stdout, stderr = writer.communicate(input=data[65536:], timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, stderr
    put = json.loads(stdout)
    assert put["path"] == "-" and put["size"] == len(data) and put["chunks"] == 4
    got = tmp_path / "got"
    got.mkdir()
    run_cas("get", put["key"], got, "--data-dir", d)
    assert (got / "piped.bin").read_bytes() == data

    # Without --name: listed without a name, so a directory gets it under its key.
    unnamed = subprocess.run(
        [*cas_command(), "put", "-", "--data-dir", str(d)], input=b"from a pipe\n", capture_output=True, timeout=60
    )
    assert unnamed.returncode == 0, unnamed.stderr
    key = unnamed.stdout.decode().strip()
    assert "standard input" in unnamed.stderr.decode()
    assert [f["name"] for f in cas_json("ls", "--data-dir", d)["files"] if f["key"] == key] == [""]
    run_cas("get", key, got, "--data-dir", d)
    assert (got / key).read_bytes() == b"from a pipe\n"
    # --name names a file too.
    named = cas_json("put", make_file(10), "--name", "renamed.bin", "--data-dir", d)
    assert [f["name"] for f in cas_json("ls", "--data-dir", d)["files"] if f["key"] == named["key"]] == ["renamed.bin"]


def test_an_invalid_key_is_bad_usage(serve, tmp_path: Path) -> None:
    d = serve("node").data_dir
    for command in (["get", "cas1nope", str(tmp_path / "out")], ["stat", "not-a-key"], ["get", "cas1" + "a" * 102 + "!"]):
        result = run_cas(*command, "--data-dir", d, check=False)
        assert result.returncode == 2, result.stderr
        assert "invalid key" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        as_json = run_cas(*command, "--data-dir", d, "--json", check=False)
        assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"]["type"] == "InvalidKeyError"
    # Checked before the node is asked: no node needed to be told so.
    nobody = run_cas("stat", "cas1nope", "--data-dir", tmp_path / "nobody", check=False)
    assert nobody.returncode == 2 and "invalid key" in nobody.stderr
    # --json with no DEST would put the file's bytes on standard output.
    key = "cas1" + "a" * 103
    no_dest = run_cas("get", key, "--json", "--data-dir", d, check=False)
    assert no_dest.returncode == 2 and json.loads(no_dest.stdout)["error"]["type"] == "UsageError"
    assert not (tmp_path / "out").exists()


def _serve_logs(tmp_path: Path, env: dict) -> list:
    """The stderr lines of a `cas serve` run at info level, started then stopped."""
    process = subprocess.Popen(
        [*cas_command(), "serve", "--data-dir", str(tmp_path / "logs"), "--no-fsync", "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CAS_LOG": "info", **env},
    )
    try:
        status = lambda: run_cas("status", "--data-dir", tmp_path / "logs", check=False).returncode == 0  # noqa: E731
        wait_until(status, timeout=60, what="cas serve to answer")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return [line for line in err.splitlines() if line.strip()]


def test_json_logs_of_cas_serve(tmp_path: Path) -> None:
    lines = _serve_logs(tmp_path, {"CAS_LOG_FORMAT": "json"})
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert isinstance(record, dict)
        assert record["level"] in ("ERROR", "WARN", "INFO", "DEBUG", "TRACE"), record
        assert isinstance(record["fields"], dict) and record["timestamp"], record
    started = [r for r in records if r["fields"].get("message") == "node started"]
    assert started and started[0]["level"] == "INFO" and started[0]["fields"]["data_dir"] == str(tmp_path / "logs")


def test_unknown_log_format_warns_and_keeps_text(tmp_path: Path) -> None:
    lines = _serve_logs(tmp_path, {"CAS_LOG_FORMAT": "yaml"})
    assert any("CAS_LOG_FORMAT=\"yaml\" is not a log format" in line for line in lines), lines
    assert not any(line.lstrip().startswith("{") for line in lines), lines
    assert any("node started" in line for line in lines)


def test_peers_json_gives_traffic_of_each_peer(serve, tmp_path: Path) -> None:
    """Two `cas serve` nodes: a file put on a goes to b; `cas peers --json`
    on each counts the bytes, and b's get of a file only a holds, the fetches."""
    key_file = tmp_path / "net.key"
    run_cas("keygen", key_file)
    common = ["--listen", "127.0.0.1:0", "--network-key", key_file, "--gossip-interval", "0.1"]
    a = serve("a", *common, "--replicas", "1")
    b = serve("b", *common, "--replicas", "0", "--bootstrap", a.status["address"])
    alive = lambda d: [p for p in cas_json("peers", "--data-dir", d)["peers"] if p["state"] == "alive"]  # noqa: E731
    wait_until(lambda: alive(a.data_dir) and alive(b.data_dir), what="a and b to see each other")
    src = tmp_path / "one.bin"
    src.write_bytes(os.urandom(200_000))
    run_cas("put", src, "--data-dir", a.data_dir)  # a's copy of each blob goes to b
    only_b_has = tmp_path / "two.bin"
    only_b_has.write_bytes(os.urandom(100_000))
    key = run_cas("put", only_b_has, "--data-dir", b.data_dir).stdout.strip()  # replicas 0: b alone holds it
    run_cas("get", key, tmp_path / "back.bin", "--data-dir", a.data_dir)
    assert (tmp_path / "back.bin").read_bytes() == only_b_has.read_bytes()

    [b_seen_by_a] = cas_json("peers", "--data-dir", a.data_dir)["peers"]
    assert b_seen_by_a["sent_bytes"] >= 200_000, b_seen_by_a
    assert b_seen_by_a["received_bytes"] >= 100_000 and b_seen_by_a["fetches"] >= 2, b_seen_by_a
    assert b_seen_by_a["fetch_seconds"] > 0 and b_seen_by_a["errors"] >= 0, b_seen_by_a
    [a_seen_by_b] = cas_json("peers", "--data-dir", b.data_dir)["peers"]
    assert a_seen_by_b["received_bytes"] >= 200_000 and a_seen_by_b["sent_bytes"] >= 100_000, a_seen_by_b
    assert a_seen_by_b["fetches"] == 0, a_seen_by_b
