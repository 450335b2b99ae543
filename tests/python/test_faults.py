"""Faults on purpose: `cas serve` processes killed with SIGKILL at random
moments during puts, gets and repair, restarted on the same data directory,
with an invariant checker after every round:

- every blob file on every node hashes to its name;
- no temporary file survives a restart (in the data directory), and a get
  whose node was killed leaves nothing at its destination;
- at the end, every file whose put succeeded (with --min-replicas 2) is got
  back byte-identical after any 2 nodes die.

Also: `cas put` on a node whose disk fills up (a tmpfs) reports the node's
answer, storage full, not the broken socket; a node started on a full disk
serves what it holds, says it cannot write, and writes again (blob index,
catalog, incarnation) without a restart once the disk has room.

`make test` runs a few rounds (CAS_FAULT_ROUNDS, default 16); `make soak`
runs many more. The seed is printed: CAS_FAULT_SEED=N replays a run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import cas
import cas.client

from conftest import Server, cas_command, cas_json, fixed_port, network_key_file, run_cas, sha256_of, wait_until

pytestmark = pytest.mark.network

NODES = 5
CHUNK = 64 * 1024
# Timings that let a failure play out in seconds (see `cas serve --help`).
FAST = (
    "--gossip-interval", "0.1",
    "--suspect-after", "1",
    "--dead-after", "2",
    "--forget-after", "60",
    "--repair-interval", "0.5",
    "--request-timeout", "2",
)


def check_blobs(server: Server) -> int:
    """Every blob file of `server` hashes to its name; returns how many."""
    count = 0
    for path in (server.data_dir / "blobs").glob("*/*"):
        if path.name.startswith("."):
            continue
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"{path} does not hash to its name"
        count += 1
    return count


def temporaries(server: Server) -> List[Path]:
    return [p for p in (server.data_dir / "blobs").glob("*/.*")]


class Cluster:
    def __init__(self, serve, tmp_path: Path, rng: random.Random) -> None:
        self.serve = serve
        self.rng = rng
        key = network_key_file(tmp_path)
        self.args = ("--network-key", key, "--chunk-size", CHUNK, "--min-replicas", "2", *FAST)
        # Each node keeps its address across restarts, as a node with a
        # configured port does. (With a new port at every restart, a node
        # killed before it saved its peers' latest addresses could come back
        # knowing only addresses that are all gone: it would need a
        # bootstrap address again, as a real node would.)
        self.listen = {f"f{i}": f"127.0.0.1:{fixed_port()}" for i in range(NODES)}
        first = serve("f0", "--listen", self.listen["f0"], *self.args)
        self.servers: Dict[str, Server] = {"f0": first}
        for i in range(1, NODES):
            name = f"f{i}"
            self.servers[name] = serve(name, "--listen", self.listen[name], *self.args, "--bootstrap", first.address)
        self.wait_mesh()

    def alive(self) -> List[str]:
        return [name for name, s in self.servers.items() if s.alive()]

    def wait_mesh(self) -> None:
        def mesh() -> bool:
            for name in self.alive():
                peers = cas_json("peers", "--data-dir", self.servers[name].data_dir)["peers"]
                if sum(p["state"] == "alive" for p in peers) < len(self.alive()) - 1:
                    return False
            return True

        try:
            wait_until(mesh, timeout=60, what="every node to see every other alive")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None

    def describe(self) -> str:
        """Who sees whom, and what each node saved to rejoin: for a failure message."""
        lines = []
        for name in self.alive():
            server = self.servers[name]
            peers = cas_json("peers", "--data-dir", server.data_dir)["peers"]
            saved = (server.data_dir / "peers").read_text().split() if (server.data_dir / "peers").exists() else []
            seen = ", ".join(f"{p.get('address')}={p['state']}" for p in peers)
            lines.append(f"{name} at {server.address}: sees [{seen}]; saved {saved}")
        return "\n".join(lines)

    def restart(self, name: str) -> None:
        """Starts `name` again on its data dir (it rejoins the peers it saved)."""
        server = self.serve(name, "--listen", self.listen[name], *self.args)
        self.servers[name] = server
        leftovers = temporaries(server)
        assert not leftovers, f"temporary files survived the restart of {name}: {leftovers}"


def run_killing(cmd: List[object], victim: Server, rng: random.Random) -> subprocess.CompletedProcess[str]:
    """Runs a `cas` command and kills `victim` with SIGKILL at a random moment of it."""
    proc = subprocess.Popen([*cas_command(), *map(str, cmd)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=rng.uniform(0.0, 0.25))
    except subprocess.TimeoutExpired:
        pass
    victim.stop(signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigkill_during_put_get_and_repair_loses_nothing(serve, tmp_path: Path) -> None:
    seed = int(os.environ.get("CAS_FAULT_SEED", random.randrange(1 << 32)))
    rounds = int(os.environ.get("CAS_FAULT_ROUNDS", "16"))
    print(f"fault injection: {rounds} rounds, CAS_FAULT_SEED={seed}")
    rng = random.Random(seed)
    cluster = Cluster(serve, tmp_path, rng)
    stored: Dict[str, Path] = {}  # key -> the source file
    counts = {"put": 0, "put-ok": 0, "get": 0, "get-ok": 0, "repair": 0}

    for r in range(rounds):
        names = cluster.alive()
        actor = rng.choice(names)
        # Half the time the node doing the work itself dies.
        victim = actor if rng.random() < 0.5 else rng.choice(names)
        action = rng.choice(["put", "get", "repair"] if stored else ["put"])
        counts[action] += 1
        if action == "put":
            src = tmp_path / f"src-{r}.bin"
            src.write_bytes(rng.randbytes(rng.randrange(1, 160 * CHUNK)))
            result = run_killing(["put", src, "--data-dir", cluster.servers[actor].data_dir], cluster.servers[victim], rng)
            if result.returncode == 0:
                stored[result.stdout.strip()] = src
                counts["put-ok"] += 1
        elif action == "get":
            key = rng.choice(sorted(stored))
            dest = tmp_path / f"got-{r}.bin"
            result = run_killing(["get", key, dest, "--data-dir", cluster.servers[actor].data_dir], cluster.servers[victim], rng)
            if result.returncode == 0:
                assert sha256_of(dest) == sha256_of(stored[key])
                counts["get-ok"] += 1
            elif dest.exists():
                # The node committed the file and was killed before it could
                # say so: what is there must be the whole file, never a part.
                assert sha256_of(dest) == sha256_of(stored[key]), f"a failed get left a partial {dest}: {result.stderr}"
                print(f"round {r}: get committed, its node killed before it answered: {result.stderr.strip()}")
            leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".cas-get-")]
            assert not leftovers, f"a killed get left temporary files: {leftovers}"
        else:
            # Killed in the middle of whatever repair is doing after a loss.
            cluster.servers[victim].stop(signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 1.0))  # a random moment, not a wait for something
            other = rng.choice([n for n in cluster.alive()])
            cluster.servers[other].stop(signal.SIGKILL)
            cluster.restart(other)
        cluster.restart(victim)
        for server in cluster.servers.values():
            check_blobs(server)
    print(f"fault injection: {counts}, {len(stored)} files stored")
    assert counts["put-ok"] > 0, "no put survived: the suite checked nothing"

    # Any 2 nodes die: every stored file is still there.
    cluster.wait_mesh()
    for server in cluster.servers.values():
        wait_until(
            lambda: cas_json("status", "--data-dir", server.data_dir)["stats"]["peers_alive"] == NODES - 1,
            timeout=60,
            what="the network to settle",
        )
    for name in rng.sample(sorted(cluster.servers), 2):
        cluster.servers[name].stop(signal.SIGKILL)
    survivor = cluster.servers[rng.choice(cluster.alive())]
    for key, src in stored.items():
        dest = tmp_path / f"final-{key[:12]}.bin"
        run_cas("get", key, dest, "--data-dir", survivor.data_dir, timeout=120)
        assert sha256_of(dest) == sha256_of(src), f"{key} came back different"

    # Every node killed once more, in whatever it was doing: at the next
    # start, its blob index counts exactly the blob files it has.
    for server in cluster.servers.values():
        server.stop(signal.SIGKILL)
    for name, server in cluster.servers.items():
        sizes = [p.stat().st_size for p in (server.data_dir / "blobs").glob("*/*") if not p.name.startswith(".")]
        node = cas.Node(server.data_dir, fsync=False)
        try:
            stats = node.stats()
        finally:
            node.close()
        assert (stats.blobs_stored, stats.bytes_stored) == (len(sizes), sum(sizes)), f"the index of {name} disagrees with its files"


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mounts a tmpfs of the given size in MiB at a new directory under
    tmp_path (a disk that fills up); unmounted at the end. Skips where it
    cannot be mounted (not root, no mount permission)."""
    mounted: List[Path] = []

    def mount(name: str, mib: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for a full disk: {result.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_put_on_a_full_disk_names_storage_full_not_the_socket(serve, tmpfs, tmp_path: Path) -> None:
    # The node answers 507 while `cas put` is still sending the body, and
    # closes the connection: the command reports that answer.
    tmpfs("disk", 24)
    server = serve("disk/node")
    source = tmp_path / "big"
    with open(source, "wb") as f:
        for i in range(64):
            f.write(hashlib.sha256(str(i).encode()).digest() * (1024 * 1024 // 32))
    try:
        result = run_cas("put", "--data-dir", server.data_dir, source, check=False)
        assert result.returncode != 0, result.stdout
        assert "control connection" not in result.stderr and "Broken pipe" not in result.stderr, result.stderr
        assert "storage full" in result.stderr, result.stderr
        # The same, machine-readable.
        result = run_cas("put", "--json", "--data-dir", server.data_dir, source, check=False)
        assert json.loads(result.stdout)["error"]["type"] == "StorageFullError", result.stdout
        assert server.alive(), "the node is still serving"
        # And it says it cannot write: in its counters, `cas status` and /health.
        status = cas_json("status", "--data-dir", server.data_dir, "--json")
        assert status["stats"]["cannot_write"] == 1, status
        assert "CANNOT WRITE" in run_cas("status", "--data-dir", server.data_dir).stdout
        with pytest.raises(cas.CasError, match="cannot write"):
            cas.client.get_json(server.data_dir, "/health")
    finally:
        server.stop()


def fill(disk: Path) -> Path:
    """Fills the file system at `disk` to its last page; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size >= 512:
            try:
                os.write(fd, b"\xff" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                size //= 2
    finally:
        os.close(fd)
    return filler


def test_a_node_started_on_a_full_disk_serves_what_it_holds_and_writes_again_once_space_returns(
    serve, tmpfs, tmp_path: Path
) -> None:
    disk = tmpfs("full", 16)
    server = serve("full/node")
    held = tmp_path / "held"
    held.write_bytes(os.urandom(300_000))
    key = cas_json("put", held, "--data-dir", server.data_dir)["key"]
    server.stop()
    incarnation = (server.data_dir / "incarnation").read_bytes()
    filler = fill(disk)

    # The start writes the blob index's mark and the incarnation, and
    # probes a blob write: none of the failures stops it.
    server = serve("full/node", "--repair-interval", 1)
    assert server.alive()
    got = tmp_path / "got"
    run_cas("get", "--data-dir", server.data_dir, key, got)
    assert got.read_bytes() == held.read_bytes(), "it serves what it holds"
    status = cas_json("status", "--data-dir", server.data_dir)
    assert status["stats"]["cannot_write"] == 1, status
    assert status["stats"]["blobs_stored"] > 0, status
    assert "CANNOT WRITE" in run_cas("status", "--data-dir", server.data_dir).stdout
    with pytest.raises(cas.CasError, match="cannot write"):
        cas.client.get_json(server.data_dir, "/health")
    new = tmp_path / "new"
    new.write_bytes(os.urandom(200_000))
    result = run_cas("put", "--data-dir", server.data_dir, new, check=False)
    assert result.returncode != 0 and "storage full" in result.stderr, result.stderr
    # A put of what it holds writes no blob, only the catalog's entry (a
    # long name: pages the catalog's file does not have yet), which the
    # full disk refuses: the file is stored (the key is right), not listed.
    long_name = "again-" + "x" * 60_000
    assert cas_json("put", held, "--name", long_name, "--data-dir", server.data_dir)["key"] == key
    assert [f["name"] for f in cas_json("ls", "--data-dir", server.data_dir)["files"]] == ["held"]

    # Room again: the node writes without a restart (within a few repair
    # intervals of 1 s), and its incarnation is saved.
    filler.unlink()
    wait_until(
        lambda: cas_json("status", "--data-dir", server.data_dir)["stats"]["cannot_write"] == 0,
        timeout=30,
        what="the node to write again",
    )
    assert cas.client.get_json(server.data_dir, "/health")["status"] == "ok"
    key2 = cas_json("put", new, "--data-dir", server.data_dir)["key"]
    # The catalog too, without a restart.
    assert cas_json("put", held, "--name", long_name, "--data-dir", server.data_dir)["key"] == key
    listed = [(f["key"], f["name"]) for f in cas_json("ls", "--data-dir", server.data_dir)["files"]]
    assert listed == [(key, "held"), (key2, "new"), (key, long_name)], listed
    saved = (server.data_dir / "incarnation").read_bytes()
    assert int.from_bytes(saved, "big") > int.from_bytes(incarnation, "big"), "this start's incarnation is saved"
    server.stop()
    # And it starts again as any node does, with everything.
    server = serve("full/node")
    assert cas_json("status", "--data-dir", server.data_dir)["stats"]["cannot_write"] == 0
    run_cas("get", "--data-dir", server.data_dir, key2, tmp_path / "got2")
    assert (tmp_path / "got2").read_bytes() == new.read_bytes()
