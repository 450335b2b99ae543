"""`cas serve` nodes on separate hosts: each in its own Linux network
namespace with its own address on a bridge (tests/python/netns.py). A file
put on one host is got back on another; a host cut off by an nftables drop
rule is declared dead by the others while the file stays available; once the
rule is gone the host rejoins.

Needs root, `ip` and `nft` (`make test-py` installs nftables when it can);
skipped, with the reason, where network namespaces cannot be made."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

import netns
from conftest import Server, cas_command, cas_json, sha256_of, wait_until

pytestmark = [pytest.mark.network, pytest.mark.netns]

NODES = 4
CHUNK = 64 * 1024
# cas-core's Config defaults, which `cas serve` has no flags for: a silent
# peer is suspect after 5 s, dead after 10 s and forgotten after 120 s.
DEAD_AFTER = 10
FORGET_AFTER = 120
# A node checks its bootstrap address again every 5 gossip rounds of 1 s.
BOOTSTRAP_RECHECK = 5
# Room for gossip to spread, and for a slow, shared machine.
SLACK = 30


class HostServer(Server):
    """A `cas serve` process in a host's namespace, logging to a file."""

    def __init__(self, host: netns.Host, data_dir: Path, process: subprocess.Popen[str], log: Path) -> None:
        super().__init__(data_dir, process)
        self.host = host
        self.log = log

    def query(self) -> Optional[dict]:
        if not self.alive():
            raise AssertionError(f"cas serve on {self.host.netns} exited {self.process.returncode}: {tail(self.log)}")
        return super().query()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


@pytest.fixture
def lab() -> Iterator[netns.Lab]:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = netns.Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def host_serve(lab: netns.Lab, tmp_path: Path) -> Iterator[Callable[..., HostServer]]:
    """Factory of `cas serve` processes, each on a new host of the lab, that
    answer `cas status` from the root namespace (the control socket is a
    file in the data directory). Every one is stopped before the lab goes."""
    servers: List[HostServer] = []
    network_key = netns.make_network_key(cas_command(), tmp_path / "network.key")

    def start(name: str, *extra: object) -> HostServer:
        host = lab.add_host()
        data_dir = tmp_path / name
        log = tmp_path / f"{name}.log"
        with open(log, "w") as log_file:
            process = subprocess.Popen(
                netns.serve_command(cas_command(), host, data_dir, *extra, network_key=network_key),
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                text=True,
                env={**os.environ, "CAS_LOG": "info"},
            )
        server = HostServer(host, data_dir, process, log)
        servers.append(server)
        server.status = wait_until(server.query, timeout=60, what=f"cas serve on {host.netns} to answer")  # type: ignore[assignment]
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        # Shown by pytest only when the test failed.
        for server in servers:
            print(f"---- {server.host.netns} ({server.host.address}), last lines of {server.log}\n{tail(server.log)}")


def peer_states(server: Server) -> Dict[str, str]:
    """The node's peer table: state by peer address."""
    peers = cas_json("peers", "--data-dir", server.data_dir)["peers"]
    return {p["address"]: p["state"] for p in peers}


def all_alive(servers: List[HostServer]) -> bool:
    """Whether every node sees every other one alive, at its host's address."""
    for s in servers:
        states = peer_states(s)
        if set(states) != {o.host.address for o in servers if o is not s}:
            return False
        if any(state != "alive" for state in states.values()):
            return False
    return True


def get_and_check(server: Server, key: str, src: Path, dest: Path) -> None:
    got = cas_json("get", key, dest, "--data-dir", server.data_dir)
    assert got["size"] == src.stat().st_size
    assert sha256_of(dest) == sha256_of(src)


def test_a_host_cut_off_is_dead_then_rejoins(host_serve, lab: netns.Lab, make_file, tmp_path: Path) -> None:
    # One replica: each blob is on the owner and on one other host, so gets
    # on other hosts go over the network.
    first = host_serve("n0", "--chunk-size", CHUNK, "--replicas", 1)
    assert first.address == first.host.address
    rest = [
        host_serve(f"n{i}", "--chunk-size", CHUNK, "--replicas", 1, "--bootstrap", first.address)
        for i in range(1, NODES)
    ]
    servers = [first, *rest]
    assert len({s.host.ip for s in servers}) == NODES
    wait_until(lambda: all_alive(servers), timeout=60, what="every node to see the 3 others alive at their hosts")

    owner = first
    src = make_file(4 << 20)
    key = cas_json("put", src, "--data-dir", owner.data_dir)["key"]
    info = cas_json("stat", key, "--data-dir", owner.data_dir)
    held = {s: sum(s.id in h["nodes"] for h in info["holders"]) for s in rest}
    # Cut off the host holding the most blobs, so that the get during the
    # cut must do without it.
    victim = max(rest, key=lambda s: held[s])
    assert held[victim] > 0
    before, during = [s for s in rest if s is not victim]

    get_and_check(before, key, src, tmp_path / "before-cut.bin")
    assert cas_json("status", "--data-dir", before.data_dir)["stats"]["bytes_received"] > 0

    others = [s for s in servers if s is not victim]
    assert lab.reachable(owner.host, victim.host)
    lab.cut(victim.host)
    cut_at = time.monotonic()
    assert not lab.reachable(owner.host, victim.host), "the drop rule let a connection through"

    def victim_dead_everywhere() -> bool:
        for s in others:
            states = peer_states(s)
            if states.get(victim.host.address) != "dead":
                return False
            if any(state != "alive" for address, state in states.items() if address != victim.host.address):
                return False
        return True

    wait_until(victim_dead_everywhere, timeout=DEAD_AFTER + SLACK, what=f"the others to mark {victim.host.ip} dead")
    # Alone, the victim sees every other host die too.
    wait_until(
        lambda: set(peer_states(victim).values()) == {"dead"},
        timeout=DEAD_AFTER + SLACK,
        what=f"{victim.host.ip} to mark the others dead",
    )
    get_and_check(during, key, src, tmp_path / "during-cut.bin")

    lab.restore(victim.host)
    assert lab.reachable(owner.host, victim.host)
    # No node dials a peer it holds dead. But the connections (and dials)
    # begun before the cut outlive it, and TCP delivers what was queued on
    # them once the rule is gone: that gossip brings the victim back within
    # seconds. The bound is for the slow path, had they all closed: the
    # victim forgets its bootstrap node FORGET_AFTER after the cut, then
    # dials it again.
    rejoin_by = cut_at + FORGET_AFTER + BOOTSTRAP_RECHECK + SLACK
    wait_until(
        lambda: all_alive(servers),
        timeout=rejoin_by - time.monotonic(),
        what=f"{victim.host.ip} to be alive again on every host",
    )
    get_and_check(victim, key, src, tmp_path / "after-rejoin.bin")
