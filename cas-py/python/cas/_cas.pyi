"""Type stubs of the native module `cas._cas` (re-exported by `cas`)."""

import os
from typing import Callable, Iterable, List, Optional, Sequence, Union

from .file import File
from .result import PutResult

__version__: str

StrPath = Union[str, "os.PathLike[str]"]
Progress = Callable[[int, int], object]
"""Called with (bytes done, bytes total); total is 0 when unknown."""

def generate_network_key() -> bytes:
    """A new random 32-byte network key; keep it secret."""

def _check_address(setting: str, address: str, port_zero: bool) -> None:
    """Raises InvalidArgumentError if `address` is not HOST:PORT (as Node checks it)."""

def _parse_key(key: str) -> str:
    """The key in its exact form (whitespace around it ignored); raises InvalidKeyError if malformed."""

def _put_zeros(node: Node, size: int) -> str:
    """(Tests) stores `size` zero bytes from one real chunk; returns the key."""

class Node:
    """A CAS node on a data directory; a context manager, usable from many threads."""

    def __init__(
        self,
        data_dir: StrPath,
        *,
        listen: Optional[str] = None,
        bootstrap: Iterable[str] = ...,
        replicas: int = 3,
        min_replicas: int = 0,
        chunk_size: Optional[int] = None,
        capacity: Optional[int] = None,
        secret: Optional[bytes] = None,
        fsync: bool = True,
        network_key: Optional[bytes] = None,
        advertise: Optional[str] = None,
        gossip_interval: Optional[float] = None,
        request_timeout: Optional[float] = None,
        suspect_after: Optional[float] = None,
        dead_after: Optional[float] = None,
        forget_after: Optional[float] = None,
        repair_interval: Optional[float] = None,
        keep_fetched: bool = True,
        parallelism: int = 0,
        scrub_rate: Optional[int] = None,
        idle_timeout: Optional[float] = None,
        max_get_bytes: Optional[int] = None,
        memory_budget: Optional[int] = None,
        placement_diversity: Optional[str] = None,
        max_handshaking: Optional[int] = None,
        max_handshaking_per_address: Optional[int] = None,
        max_handshaking_per_prefix: Optional[int] = None,
        first_message_timeout: Optional[float] = None,
        handshake_timeout: Optional[float] = None,
        max_inbound: Optional[int] = None,
        max_inbound_per_address: Optional[int] = None,
        max_inbound_per_prefix: Optional[int] = None,
        bad_gossip_strikes: Optional[int] = None,
        liar_penalty: Optional[float] = None,
    ) -> None:
        """Opens (creating, owner-only) and locks `data_dir`, and starts a node.

        `listen` ("127.0.0.1:0" for any free port) turns networking on and
        `bootstrap` lists nodes to join through. `replicas` copies go to other
        nodes; a put fails if a blob reaches fewer than `min_replicas`.
        `chunk_size` is a power of two from 65536 to 16777216 (default 1 MiB).
        `capacity` bounds the bytes of blobs stored here: None for no limit
        but the disk, 0 to store nothing. `secret` (32 bytes) replaces the
        convergence secret of `data_dir` for this run. A bad setting (an
        address that is not "host:port", an empty `data_dir`, ...) raises
        InvalidArgumentError before anything is created or opened.

        `network_key` (32 bytes, from `generate_network_key()`) is the key of
        the network: only nodes holding the same key can connect. None reads
        `<data_dir>/network_key`, which the first node of a network (no
        `bootstrap`) creates; a node given `bootstrap` and no key fails to
        start. `advertise` ("host:port") is the address peers dial, needed
        when `listen` is "0.0.0.0:port".

        Timings, in seconds (None keeps the default): `gossip_interval` (1),
        `request_timeout` (10), `suspect_after` (5), `dead_after` (10) and
        `forget_after` (120) for a silent peer, `repair_interval` (30); each
        from 0.001 to a year, with suspect_after <= dead_after <=
        forget_after. `keep_fetched` keeps blobs fetched from peers here;
        `parallelism` is the chunks one put or get processes at once (0:
        twice the cores, 8 times for a put with fsync on; at most 1024). `scrub_rate` is the bytes per
        second of stored blobs re-read and verified in the background
        (default 1 MiB/s; 0 = off). `idle_timeout` (60 s) closes a
        connection silent that long; `max_get_bytes` (1 GiB) is the largest
        file `get_bytes` returns in memory. `memory_budget` (256 MiB, at
        least 67125312, just over 64 MiB) bounds the bytes peers can make the node hold
        over all connections (frames arriving, answers unwritten); a peer
        over its share is slowed, then disconnected. `placement_diversity` is how
        copies spread over addresses: "prefix" (default: one copy per IP
        address, distinct /24 or /48 prefixes first), "address" (one copy per
        IP address) or "none"; loopback addresses count by port.

        Limits on what outsiders and peers can take of the node (None keeps
        the default; SECURITY.md says what each defends against):
        `max_handshaking` (256) connections in their handshake at once, at
        most `max_handshaking_per_address` (16) from one IP address and
        `max_handshaking_per_prefix` (64) from one IPv4 /24 or IPv6 /64;
        `first_message_timeout` (1 s) for a connection's first handshake
        message and `handshake_timeout` (5 s) for the whole handshake;
        `max_inbound` (1024) handshaken inbound connections, at most
        `max_inbound_per_address` (256) and `max_inbound_per_prefix` (512);
        `bad_gossip_strikes` (2) gossip messages with a bad signature before
        a peer's connection is closed; `liar_penalty` (600 s) during which a
        peer that served a bad blob is asked last. Counts are at least 1; an
        address's share may not exceed its prefix's, nor a prefix's the
        room's; `first_message_timeout` may not exceed `handshake_timeout`.
        """
    def get(
        self, key: str, dest: StrPath, progress: Optional[Progress] = None, cancel: Optional[Cancel] = None
    ) -> int:
        """Writes the file of `key` to `dest`; returns its size. Nothing is
        left at `dest` on failure: a callback that raises, Ctrl-C, or
        `cancel.cancel()` from another thread (`CancelledError`)."""
    def get_bytes(self, key: str) -> bytes:
        """Returns the whole file of `key`. A file over 1 GiB raises
        InvalidArgumentError before anything is fetched: `open` or `get`
        stream files of any size."""
    def open(self, key: str) -> File:
        """Opens the file of `key` as a seekable, read-only binary file."""
    def stat(self, key: str) -> Stat:
        """Size, chunks and the holders of each blob of `key`."""
    def peers(self) -> list[Peer]:
        """The peer table."""
    def unreachable_bootstrap(self) -> list[str]:
        """Bootstrap addresses given that the last attempt did not reach; still being tried."""
    def refused_bootstrap(self) -> list[str]:
        """Bootstrap addresses (and saved peers) whose node refused this node's network key; not tried again."""
    def stats(self) -> Stats:
        """Counters since start."""
    def serve_http(
        self,
        address: str = "127.0.0.1:0",
        *,
        token_file: Optional[Union[str, os.PathLike[str]]] = None,
        hosts: Optional[Sequence[str]] = None,
    ) -> str:
        """Serves this node over HTTP until it is closed; returns the bound `host:port`
        (`unix:PATH` serves on an owner-only Unix socket). Another address than
        loopback needs `token_file` (the bearer token for uploads and the API).
        Over TCP it answers only its own address (and localhost on loopback) or
        one of `hosts`, other names it is reached by (`NAME` or `NAME:PORT`)."""
    @property
    def address(self) -> Optional[str]:
        """The `host:port` peers reach this node at; None without networking."""
    @property
    def id(self) -> str:
        """This node's persistent id (hex)."""
    @property
    def data_dir(self) -> os.PathLike[str]: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None:
        """Stops the node and releases its data directory (idempotent)."""
    def __enter__(self) -> Node: ...
    def __exit__(self, *exc_info: object) -> bool: ...

class Cancel:
    """Stops a `Node.get` from another thread."""

    def __init__(self) -> None: ...
    def cancel(self) -> bool:
        """True: the get raises `CancelledError` and leaves nothing at its
        destination. False: it had already completed."""
    @property
    def cancelled(self) -> bool: ...

class Stat:
    key: str
    size: int
    chunk_size: int
    chunks: int
    manifest_id: str
    holders: list[tuple[str, list[str]]]
    """Each blob (manifest first) with the ids of the nodes holding it."""
    @property
    def nodes(self) -> list[str]:
        """Every node holding at least one blob of the file."""

class Peer:
    id: str
    address: str
    state: str
    """"alive", "suspect" or "dead"."""
    last_seen: float

class FileEntry:
    """A file this node put."""

    key: str
    name: str
    """The file name at put time, the `name` given to `put_bytes`, or ""."""
    size: int
    time: float
    """When it was (last) put, seconds since the epoch."""

class Stats:
    bytes_sent: int
    bytes_received: int
    blobs_stored: int
    bytes_stored: int
    requests_served: int
    verification_failures: int
    peers_alive: int
    blobs_repaired: int
    request_timeouts: int
    hedged_requests: int
    repair_refused_full: int
    peers_full: int
    cannot_write: int
    blobs_scrubbed: int
    bytes_scrubbed: int
    scrub_corrupt: int
    scrub_missing: int
    scrub_restored: int
    gossip_rejected: int
    connections_evicted: int
    audits: int
    audits_failed: int
    memory_held: int
    connections_over_budget: int

class Reader:
    """The native reader wrapped by `cas.File`."""

    @property
    def size(self) -> int: ...
    @property
    def chunks_fetched(self) -> int: ...
    @property
    def piece(self) -> int: ...
    def read(self, size: int = -1) -> bytes: ...
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def tell(self) -> int: ...
    def close(self) -> None: ...
