"""Bad input: each raises its documented exception, with a useful message,
and leaves nothing partial behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cas

CHUNK = 64 * 1024


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".cas-get-"))


def test_hierarchy() -> None:
    for cls in (
        cas.InvalidKeyError,
        cas.NotFoundError,
        cas.IntegrityError,
        cas.InputError,
        cas.DestinationError,
        cas.StorageError,
        cas.StorageFullError,
        cas.DataDirLockedError,
        cas.NetworkError,
        cas.TimeoutError,
        cas.ReplicationError,
        cas.InvalidArgumentError,
        cas.ClosedError,
        cas.NoNodeRunningError,
    ):
        assert issubclass(cls, cas.CasError)
    assert issubclass(cas.InvalidKeyError, ValueError)
    assert issubclass(cas.NotFoundError, KeyError)
    assert issubclass(cas.InputError, OSError)
    assert issubclass(cas.DestinationError, OSError)
    assert issubclass(cas.StorageFullError, OSError)
    assert issubclass(cas.TimeoutError, TimeoutError)
    assert issubclass(cas.NetworkError, ConnectionError)
    assert issubclass(cas.InvalidArgumentError, ValueError)
    # The message prints plainly even where KeyError would quote it.
    assert str(cas.NotFoundError("not found: key x")) == "not found: key x"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("", "empty"),
        ("hello", "cas1"),
        ("cas1" + "a" * 10, "characters"),
        ("cas1" + "A" * 103, "upper-case"),
        ("cas1" + "a" * 50 + " " + "a" * 52, "whitespace"),
        ("cas1" + "a" * 102 + "1", "base32"),
    ],
)
def test_invalid_keys(node: cas.Node, tmp_path: Path, bad: str, reason: str) -> None:
    for call in (
        lambda: node.get_bytes(bad),
        lambda: node.get(bad, tmp_path / "out"),
        lambda: node.open(bad),
        lambda: node.stat(bad),
    ):
        with pytest.raises(cas.InvalidKeyError, match=reason):
            call()
        with pytest.raises(ValueError):
            call()
    assert not (tmp_path / "out").exists()


def test_unknown_key_is_not_found(nodes, tmp_path: Path) -> None:
    elsewhere = nodes("elsewhere").put_bytes(b"only on the other node")
    here = nodes("here")
    dest = tmp_path / "dest.bin"
    with pytest.raises(cas.NotFoundError, match="not found") as info:
        here.get(elsewhere, dest)
    assert "check the key" in str(info.value)
    with pytest.raises(KeyError):
        here.get_bytes(elsewhere)
    with pytest.raises(cas.NotFoundError):
        here.open(elsewhere)
    with pytest.raises(cas.NotFoundError):
        here.stat(elsewhere)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_altered_key_fails_integrity(node: cas.Node) -> None:
    key = node.put_bytes(b"genuine")
    # Same manifest id, different manifest key: the manifest cannot be opened.
    altered = key[:60] + ("a" if key[60] != "a" else "b") + key[61:]
    with pytest.raises(cas.IntegrityError, match="wrong key or tampered"):
        node.get_bytes(altered)


def test_missing_input_file(node: cas.Node, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file.bin"
    with pytest.raises(cas.InputError, match="no-such-file.bin") as info:
        node.put(missing)
    assert isinstance(info.value, OSError)
    assert info.value.filename == str(missing)
    assert info.value.errno == 2


def test_directory_as_input(node: cas.Node, tmp_path: Path) -> None:
    with pytest.raises(cas.InputError, match="directory"):
        node.put(tmp_path)


def test_unwritable_destinations_leave_nothing(node: cas.Node, tmp_path: Path) -> None:
    key = node.put_bytes(os.urandom(4 * CHUNK))
    # The parent directory does not exist.
    with pytest.raises(cas.DestinationError, match="missing-dir") as info:
        node.get(key, tmp_path / "missing-dir" / "out.bin")
    assert isinstance(info.value, OSError)
    # The destination is a directory.
    (tmp_path / "a-dir").mkdir()
    with pytest.raises(cas.DestinationError, match="directory"):
        node.get(key, tmp_path / "a-dir")
    assert list((tmp_path / "a-dir").iterdir()) == []
    # The parent is a regular file.
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(cas.DestinationError):
        node.get(key, tmp_path / "plain" / "out.bin")
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_destination_directory(node: cas.Node, tmp_path: Path) -> None:
    key = node.put_bytes(b"data")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(cas.DestinationError, match="Permission denied"):
            node.get(key, ro / "out.bin")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_failed_get_keeps_an_existing_destination(nodes, tmp_path: Path) -> None:
    key = nodes("a").put_bytes(b"new content")
    other = nodes("b")
    dest = tmp_path / "existing.txt"
    dest.write_bytes(b"old content")
    with pytest.raises(cas.NotFoundError):
        other.get(key, dest)
    assert dest.read_bytes() == b"old content"


def test_second_node_on_the_same_data_dir(node: cas.Node, tmp_path: Path) -> None:
    with pytest.raises(cas.DataDirLockedError, match="in use") as info:
        cas.Node(tmp_path / "node")
    assert str(tmp_path / "node") in str(info.value)
    # The first node is unaffected.
    assert node.get_bytes(node.put_bytes(b"still works")) == b"still works"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chunk_size": 1000}, "chunk_size"),
        ({"chunk_size": 1 << 30}, "chunk_size"),
        ({"replicas": 1, "min_replicas": 2}, "min_replicas"),
        ({"secret": b"short"}, "32 bytes"),
    ],
)
def test_invalid_settings(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(cas.InvalidArgumentError, match=match):
        cas.Node(tmp_path / "n", **kwargs)
    with pytest.raises(ValueError):
        cas.Node(tmp_path / "n", **kwargs)


def test_wrong_argument_types(node: cas.Node) -> None:
    with pytest.raises(TypeError):
        node.put(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        node.get_bytes(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cas.Node("x", bootstrap="127.0.0.1:1")  # type: ignore[arg-type]


def test_min_replicas_without_peers_fails(tmp_path: Path) -> None:
    with cas.Node(tmp_path / "lonely", replicas=2, min_replicas=1) as node:
        with pytest.raises(cas.ReplicationError, match="min_replicas"):
            node.put_bytes(b"needs a copy elsewhere")


# The largest file a manifest can describe (4 TiB less 16 MiB): the most
# chunks, each of the largest size, here all one real chunk of zeros.
FOUR_TIB = 262_143 * 16 * 1024 * 1024
ONE_GIB = 1 << 30

# Reads all of a file in the way named, in a process of its own: an abort
# there (an allocation the size of the claim) fails the test, not pytest.
READ_ALL = r"""
import io, json, sys
import cas

data_dir, key, how = sys.argv[1:]
with cas.Node(data_dir, fsync=False) as node, node.open(key) as f:
    buffered = io.BufferedReader(f)
    read_all = {
        "read()": lambda: f.read(),
        "read(-1)": lambda: f.read(-1),
        "read(None)": lambda: f.read(None),
        "readall()": lambda: f.readall(),
        "read(size)": lambda: f.read(2 * f.size),
        "BufferedReader.read()": lambda: buffered.read(),
    }[how]
    try:
        read_all()
        error = None
    except Exception as e:
        error = {"class": type(e).__name__, "message": str(e)}
    fetched = f.chunks_fetched
    # The file is still readable in pieces: its last bytes.
    f.seek(-10, io.SEEK_END)
    print(json.dumps({"error": error, "fetched": fetched, "tail": f.read().hex()}))
"""


@pytest.fixture(scope="module")
def four_tib(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory holding a 4 TiB file of zeros, and its key."""
    data_dir = tmp_path_factory.mktemp("four-tib") / "node"
    with cas.Node(data_dir, fsync=False) as node:
        key = cas._cas._put_zeros(node, FOUR_TIB)
        assert node.stat(key).size == FOUR_TIB
    return data_dir, key


@pytest.mark.parametrize(
    "how", ["read()", "read(-1)", "read(None)", "readall()", "read(size)", "BufferedReader.read()"]
)
def test_reading_all_of_a_file_over_max_get_bytes_raises(four_tib: tuple[Path, str], how: str) -> None:
    data_dir, key = four_tib
    done = subprocess.run(
        [sys.executable, "-c", READ_ALL, str(data_dir), key, how], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    result = json.loads(done.stdout)
    error = result["error"]
    assert error is not None and error["class"] == "InvalidArgumentError", result
    message = error["message"]
    for part in (str(FOUR_TIB), f"max_get_bytes ({ONE_GIB})", "read it in pieces", "get it to a file"):
        assert part in message, (part, message)
    assert result["tail"] == "00" * 10
    assert result["fetched"] == 0, "refused before fetching anything"
    with cas.Node(data_dir, fsync=False) as node:
        with pytest.raises(cas.InvalidArgumentError, match=str(FOUR_TIB)):
            node.get_bytes(key)
