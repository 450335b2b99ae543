"""Five-node networks on 127.0.0.1: in this process through cas.Node, and as
`cas serve` processes driven by the `cas` command. Skipped (see conftest)
until cas-core has networking."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Callable, List

import pytest

import cas
from conftest import Server, cas_json, network_key_file, run_cas, sha256_of, wait_until

pytestmark = pytest.mark.network

NODES = 5
CHUNK = 64 * 1024


def alive_peers(node: cas.Node) -> int:
    return sum(p.state == "alive" for p in node.peers())


def start_network(nodes: Callable[..., cas.Node]) -> List[cas.Node]:
    first = nodes("n0", listen="127.0.0.1:0", chunk_size=CHUNK)
    assert first.address, "a node started with listen= must have an address"
    # The first node of a network creates its key; the others get a copy.
    key = (Path(first.data_dir) / "network_key").read_bytes()
    rest = [
        nodes(f"n{i}", listen="127.0.0.1:0", bootstrap=[first.address], chunk_size=CHUNK, network_key=key)
        for i in range(1, NODES)
    ]
    network = [first, *rest]
    wait_until(
        lambda: all(alive_peers(n) == NODES - 1 for n in network), timeout=60, what="every node to see 4 alive peers"
    )
    return network


def test_five_nodes_in_process(nodes, make_file, tmp_path: Path) -> None:
    network = start_network(nodes)
    addresses = {n.address for n in network}
    assert len(addresses) == NODES
    for n in network:
        assert {p.address for p in n.peers()} == addresses - {n.address}

    src = make_file(40 * CHUNK + 99)
    owner = network[0]
    key = owner.put(src)
    assert key.replicas == key.replicas_wanted == 3

    # Every blob is on the owner and on 3 other nodes.
    stat = owner.stat(key)
    for blob, holders in stat.holders:
        assert len(set(holders)) >= 4, f"blob {blob} has {len(holders)} holders"

    dest = tmp_path / "from-n4.bin"
    network[4].get(key, dest)
    assert sha256_of(dest) == sha256_of(src)
    assert network[3].get_bytes(key) == src.read_bytes()

    # Range reads through another node fetch only what they read.
    data = src.read_bytes()
    with network[2].open(key) as f:
        f.seek(17 * CHUNK + 5)
        assert f.read(1000) == data[17 * CHUNK + 5 : 17 * CHUNK + 1005]
        assert f.chunks_fetched == 1

    # Stop three nodes, the owner among them: each blob had 4 copies on 5
    # nodes, so one of the two left still holds it.
    for n in (network[0], network[1], network[2]):
        n.close()
    for survivor in (network[3], network[4]):
        out = tmp_path / f"after-stop-{survivor.id[:8]}.bin"
        survivor.get(key, out)
        assert sha256_of(out) == sha256_of(src)


def test_concurrent_puts_on_a_network(nodes) -> None:
    network = start_network(nodes)
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.randrange(1, 6 * CHUNK)) for _ in range(10)]
    keys = [network[i % NODES].put_bytes(p) for i, p in enumerate(payloads)]
    for i, (key, payload) in enumerate(zip(keys, payloads)):
        assert network[(i + 2) % NODES].get_bytes(key) == payload


def start_serve_network(serve, tmp_path: Path) -> List[Server]:
    key = network_key_file(tmp_path)
    common = ("--listen", "127.0.0.1:0", "--network-key", key, "--chunk-size", CHUNK)
    first = serve("s0", *common)
    assert first.address, "cas status --json must report the address of a node started with --listen"
    rest = [serve(f"s{i}", *common, "--bootstrap", first.address) for i in range(1, NODES)]
    servers = [first, *rest]

    def everyone_sees_everyone() -> bool:
        for s in servers:
            peers = cas_json("peers", "--data-dir", s.data_dir)["peers"]
            if sum(p["state"] == "alive" for p in peers) != NODES - 1:
                return False
        return True

    wait_until(everyone_sees_everyone, timeout=60, what="every cas serve to see 4 alive peers")
    return servers


def test_serve_network_survives_kill_9(serve, make_file, tmp_path: Path) -> None:
    servers = start_serve_network(serve, tmp_path)
    by_id = {s.id: s for s in servers}
    src = make_file(3 << 20)
    owner = servers[0]
    put = run_cas("put", src, "--data-dir", owner.data_dir)
    key = put.stdout.strip()
    assert "3 copies on other nodes" in put.stderr and "warning" not in put.stderr, put.stderr
    again = cas_json("put", src, "--data-dir", owner.data_dir)
    assert again["key"] == key and again["replicas"] == again["replicas_wanted"] == 3

    info = cas_json("stat", key, "--data-dir", owner.data_dir)
    assert info["size"] == 3 << 20
    for holder in info["holders"]:
        assert len(holder["nodes"]) >= 4
    for n in info["nodes"]:
        assert n["address"] == by_id[n["id"]].address

    # Kill -9 the owner and the other node holding the most blobs.
    others = [n["id"] for n in info["nodes"] if n["id"] != owner.id]
    victim = max(others, key=lambda i: sum(i in h["nodes"] for h in info["holders"]))
    owner.stop(signal.SIGKILL)
    by_id[victim].stop(signal.SIGKILL)

    survivors = [s for s in servers if s.alive()]
    assert len(survivors) == 3
    for s in survivors:
        dest = tmp_path / f"copy-{s.id[:8]}.bin"
        got = cas_json("get", key, dest, "--data-dir", s.data_dir)
        assert got["size"] == 3 << 20
        assert sha256_of(dest) == sha256_of(src)
