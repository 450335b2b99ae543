"""Linux network namespaces as separate hosts for `cas serve` nodes.

A `Lab` is a hub namespace holding a bridge, plus one namespace per host with
a veth whose other end is plugged into that bridge: the hosts reach each
other on a private /24 and nothing else. The root namespace gets no
interface, no route and no traffic. `cut` and `restore` add and remove an
nftables table, inside a host's namespace, that drops everything in and out
of its veth. `close` ends whatever still runs in the namespaces and deletes
them, which deletes their veths and the bridge with them.

Every namespace is named `casnt-<pid>-<lab>-<role>`, so concurrent runs do
not collide, and a run that was killed before its finalizers ran is swept
up by the next one (`remove_stale`).

Needs root, `ip` (iproute2) and `nft` (nftables); `unavailable_reason` says
why a machine cannot run these tests.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

#: Start of the name of every namespace made here.
PREFIX = "casnt"
#: Each lab takes the first /24 of this pool that the root namespace does not use.
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
#: The bridge, in the hub namespace.
BRIDGE = "br0"
#: A host's interface, inside its own namespace.
HOST_INTERFACE = "eth0"
#: The TCP port every node listens on, on its host's address.
PORT = 7000
#: The nftables table `cut` adds in a host's namespace.
CUT_TABLE = "casnt_cut"

class NetnsError(RuntimeError):
    """A command that builds or tears down the test network failed."""


def _run(argv: Sequence[object], input: Optional[str] = None, timeout: float = 30) -> str:
    args = [str(a) for a in argv]
    try:
        result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetnsError(f"{' '.join(args)}: {e}") from e
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def ip(*args: object) -> str:
    return _run(["ip", *args])


@dataclass(frozen=True)
class Host:
    """One namespace standing for one machine, with one address on the bridge."""

    netns: str
    ip: str
    #: Its veth's other end, on the bridge in the hub namespace.
    bridge_port: str

    @property
    def address(self) -> str:
        """Where its node listens, host:port."""
        return f"{self.ip}:{PORT}"

    def command(self, argv: Sequence[object]) -> List[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *map(str, argv)]


# ---- the `cas serve` command line --------------------------------------------------------


def make_network_key(cas: Sequence[str], path: Path) -> Path:
    """The key file every node of a lab shares, made by `cas keygen`."""
    _run([*cas, "keygen", path])
    return path


def serve_command(
    cas: Sequence[str], host: Host, data_dir: Path, *extra: object, network_key: Optional[Path] = None
) -> List[str]:
    """The one place that builds a node's `cas serve` command line, run
    inside `host`'s namespace: bound to every interface, advertising the
    host's address, in the network of `network_key`."""
    if network_key is None:
        raise ValueError("nodes need a network key file: make one with make_network_key")
    addressing = ["--listen", f"0.0.0.0:{PORT}", "--advertise", host.address, "--network-key", str(network_key)]
    return host.command([*cas, "serve", "--data-dir", data_dir, "--no-fsync", *addressing, *extra])


# ---- namespaces --------------------------------------------------------------------------


def namespaces() -> List[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _pids_in(netns: str) -> List[int]:
    return [int(p) for p in ip("netns", "pids", netns).split()]


def delete_namespace(netns: str) -> None:
    """Kills what still runs in `netns` (processes this harness started
    there), then deletes it; nothing if it does not exist."""
    if netns not in namespaces():
        return
    for pid in _pids_in(netns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while _pids_in(netns) and time.monotonic() < deadline:
        time.sleep(0.05)
    ip("netns", "delete", netns)


def remove_stale() -> None:
    """Deletes the namespaces of runs whose process is gone (a run killed
    before its finalizers could run)."""
    pattern = re.compile(rf"^{PREFIX}-(\d+)-")
    for netns in namespaces():
        match = pattern.match(netns)
        if match and not _process_exists(int(match.group(1))):
            delete_namespace(netns)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def subnets_in_use() -> List[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address or a route in."""
    text = ip("-4", "-o", "addr", "show") + ip("-4", "route", "show", "table", "all")
    found = re.findall(r"\b(\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?)\b", text)
    return [ipaddress.IPv4Network(f, strict=False) for f in found]


def free_subnet() -> ipaddress.IPv4Network:
    used = subnets_in_use()
    for subnet in SUBNET_POOL.subnets(new_prefix=24):
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise NetnsError(f"every /24 of {SUBNET_POOL} is in use on this machine")


class Lab:
    """Hosts on one bridge. Make hosts with `add_host`; `close` (always, in a
    finalizer) removes everything, including what a failed `add_host` left."""

    _labs = itertools.count()

    def __init__(self) -> None:
        remove_stale()
        self.tag = f"{PREFIX}-{os.getpid()}-{next(Lab._labs)}"
        self.subnet = free_subnet()
        self.hub = f"{self.tag}-hub"
        self.hosts: List[Host] = []
        # Recorded before they are made, so that close() finds half-made ones.
        self._namespaces: List[str] = []

    def _add_namespace(self, netns: str) -> None:
        self._namespaces.append(netns)
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "lo", "up")

    def add_host(self) -> Host:
        if not self._namespaces:
            self._add_namespace(self.hub)
            ip("-n", self.hub, "link", "add", BRIDGE, "type", "bridge")
            ip("-n", self.hub, "link", "set", BRIDGE, "up")
        index = len(self.hosts)
        if index + 2 >= self.subnet.num_addresses - 1:
            raise NetnsError(f"no address left in {self.subnet}")
        host = Host(netns=f"{self.tag}-h{index}", ip=str(self.subnet[index + 2]), bridge_port=f"h{index}")
        self._add_namespace(host.netns)
        # Made in the hub, one end moved straight into the host: never in the root namespace.
        peer = ["peer", "name", HOST_INTERFACE, "netns", host.netns]
        ip("-n", self.hub, "link", "add", host.bridge_port, "type", "veth", *peer)
        ip("-n", self.hub, "link", "set", host.bridge_port, "master", BRIDGE)
        ip("-n", self.hub, "link", "set", host.bridge_port, "up")
        ip("-n", host.netns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", HOST_INTERFACE)
        ip("-n", host.netns, "link", "set", HOST_INTERFACE, "up")
        self.hosts.append(host)
        return host

    def cut(self, host: Host) -> None:
        """Drops every packet in and out of the host's interface (nftables, in its namespace)."""
        ruleset = (
            f"table inet {CUT_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority -10; policy accept; "
            f'iifname "{HOST_INTERFACE}" drop; }}\n'
            f"  chain output {{ type filter hook output priority -10; policy accept; "
            f'oifname "{HOST_INTERFACE}" drop; }}\n'
            f"}}\n"
        )
        _run(host.command(["nft", "-f", "-"]), input=ruleset)

    def restore(self, host: Host) -> None:
        """Removes the rules of `cut`."""
        _run(host.command(["nft", "delete", "table", "inet", CUT_TABLE]))

    def reachable(self, source: Host, target: Host, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from `source` to `target`'s node opens within `timeout`."""
        probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))"
        result = subprocess.run(
            source.command([sys.executable, "-c", probe, target.ip, PORT, timeout]),
            capture_output=True,
            timeout=timeout + 30,
        )
        return result.returncode == 0

    def close(self) -> None:
        """Deletes every namespace of the lab (hosts first, the hub last),
        killing what still runs in them."""
        problems: List[str] = []
        for netns in reversed(self._namespaces):
            try:
                delete_namespace(netns)
            except NetnsError as e:
                problems.append(str(e))
        self._namespaces.clear()
        if problems:
            raise NetnsError("; ".join(problems))


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
    """Why this machine cannot run the namespace tests, or None if it can
    (tried for real once: a throwaway host, cut and restored)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI runs the tests as root)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian package {package}; `make test-py` installs it when run as root)"
    lab = Lab()
    try:
        host = lab.add_host()
        lab.cut(host)
        lab.restore(host)
    except NetnsError as e:
        return f"cannot make network namespaces here: {e}"
    finally:
        lab.close()
    return None
