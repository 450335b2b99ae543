"""The ``cas`` command: ``cas serve`` runs a node; the other subcommands talk
to the node of the same data directory through its HTTP API on the control
socket (``client.py``).

Exit status: 0 success, 1 the operation failed, 2 bad usage (an invalid key
among them), 3 no node is running on the data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, NoReturn, Optional, Sequence

from . import client, errors

__all__ = ["main", "default_data_dir"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_NODE = 3


def default_data_dir() -> Path:
    """``$CAS_DATA_DIR``, else ``$XDG_DATA_HOME/cas``, else ``~/.local/share/cas``."""
    if os.environ.get("CAS_DATA_DIR"):
        return Path(os.environ["CAS_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "cas"


class UsageError(Exception):
    """A mistake in how the command was called, found after parsing: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> "NoReturn":
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


_MAX_COUNT = (1 << 63) - 1


def _count(text: str) -> int:
    """A whole number from 0 up, or a one-line usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    if value > _MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is too large")
    return value


_SIZE = re.compile(r"\s*([0-9]+)\s*(?:([kmgt])(?:ib)?)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(text: str) -> int:
    """A number of bytes: plain, or with K, M, G or T (also KiB, MiB, GiB,
    TiB), powers of two: 1M is 1048576. Or a one-line usage error (exit 2)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: a whole number of bytes, or one with K, M, G or T "
            "(or KiB, MiB, GiB, TiB: powers of two, 1M = 1048576)"
        )
    value = int(match[1]) * _UNITS[(match[2] or "").lower()]
    if value > _MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text} is too large")
    return value


def _seconds(text: str) -> float:
    """A positive number of seconds (the node checks the range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


# The timing options of `cas serve`: (option, Node keyword, default in seconds, what it is).
_TIMINGS = [
    ("--gossip-interval", "gossip_interval", 1, "how often gossip runs"),
    ("--request-timeout", "request_timeout", 10, "how long one request to a peer may take"),
    ("--suspect-after", "suspect_after", 5, "silence after which a peer is suspect"),
    ("--dead-after", "dead_after", 10, "silence after which a peer is dead (out of placement)"),
    ("--forget-after", "forget_after", 120, "silence after which a peer is forgotten"),
    ("--repair-interval", "repair_interval", 30, "how often the node tops up missing copies"),
    ("--idle-timeout", "idle_timeout", 60, "a connection silent this long is closed"),
]


# The limits of `cas serve` (cas_core's Limits; SECURITY.md says what each
# defends against): (option, type, default, what). The Node keyword is the
# option's name with underscores.
_LIMITS = [
    ("--max-handshaking", _count, 256, "connections in their handshake at once"),
    ("--max-handshaking-per-address", _count, 16, "of those, from one IP address"),
    ("--max-handshaking-per-prefix", _count, 64, "of those, from one IPv4 /24 or IPv6 /64"),
    ("--first-message-timeout", _seconds, 1, "seconds a new connection has to send its first handshake message"),
    ("--handshake-timeout", _seconds, 5, "seconds a whole handshake may take"),
    ("--max-inbound", _count, 1024, "handshaken inbound connections at once"),
    ("--max-inbound-per-address", _count, 256, "of those, from one IP address"),
    ("--max-inbound-per-prefix", _count, 512, "of those, from one IPv4 /24 or IPv6 /64"),
    ("--bad-gossip-strikes", _count, 2, "gossip messages with a bad signature before a peer's connection is closed"),
    ("--liar-penalty", _seconds, 600, "seconds a peer that served a bad blob is asked last"),
]


def _keyword(option: str) -> str:
    return option[2:].replace("-", "_")


# The node's names of the settings `cas serve` sets, with their options.
_SETTING_OPTIONS = [
    *[(keyword, option) for option, keyword, _, _ in _TIMINGS],
    *[(_keyword(option), option) for option, _, _, _ in _LIMITS],
    *[(_keyword(option), option) for option in (
        "--replicas", "--min-replicas", "--chunk-size", "--capacity", "--scrub-rate", "--parallelism",
        "--placement-diversity", "--memory-budget", "--listen", "--advertise", "--bootstrap", "--network-key", "--data-dir",
    )],
]


def _as_options(message: str) -> str:
    """A node's message about its settings in the options the user typed:
    'min_replicas (5) cannot exceed replicas (3)' becomes '--min-replicas 5
    cannot exceed --replicas 3'. A name that is part of a path, a file name
    in backquotes or a Python keyword argument (`network_key`,
    DIR/network_key, Node(network_key=...)) stays as it is."""
    for setting, option in _SETTING_OPTIONS:
        message = re.sub(
            rf"(?<![-/`(.])\b{setting}\b(?![=`/])(?: \(([^()\s]*)\))?",
            lambda m: option + (f" {m[1]}" if m[1] else ""),
            message,
        )
    return message


def _path(text: str) -> Path:
    """A path; an empty one would silently mean the working directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def _path_text(text: str) -> str:
    """A path as typed (a trailing '/' says it must be a directory); not empty."""
    _path(text)
    return text


def _address(setting: str, port_zero: bool, none: bool = False) -> Callable[[str], str]:
    """A HOST:PORT checked as the node checks it, or a one-line usage error (exit 2)."""

    def check(text: str) -> str:
        from ._cas import _check_address

        if not (none and text.lower() == "none"):
            try:
                _check_address(setting, text, port_zero)
            except errors.InvalidArgumentError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return check


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=_path,
        default=None,
        metavar="DIR",
        help="the node's data directory (default: $CAS_DATA_DIR, else ~/.local/share/cas)",
    )
    common.add_argument("--json", action="store_true", help="print a machine-readable JSON result")

    parser = _Parser(
        prog="cas",
        description="CAS: a peer-to-peer, content-addressed, encrypted file store.",
        epilog="Exit status: 0 success, 1 failure, 2 bad usage, 3 no node running on the data directory.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"cas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run a node in the foreground until interrupted")
    serve.add_argument(
        "--listen",
        type=_address("listen", port_zero=True, none=True),
        default="127.0.0.1:0",
        metavar="ADDR",
        help="address for peers, host:port (default 127.0.0.1:0, a free port); 'none' for no networking",
    )
    serve.add_argument(
        "--advertise",
        type=_address("advertise", port_zero=True),
        default=None,
        metavar="HOST:PORT",
        help="the address peers dial (needed with --listen 0.0.0.0:PORT; default: the listen address)",
    )
    serve.add_argument(
        "--bootstrap",
        type=_address("bootstrap", port_zero=False),
        action="extend",
        nargs="+",
        default=[],
        metavar="ADDR",
        help="addresses of nodes to join (HOST:PORT)",
    )
    serve.add_argument(
        "--network-key",
        type=_path,
        default=None,
        metavar="FILE",
        help="the network's 32-byte key file (from 'cas keygen'; default: DATA_DIR/network_key, "
        "created by the first node of a network, one started without --bootstrap)",
    )
    serve.add_argument(
        "--http",
        type=_address("http", port_zero=True),
        default=None,
        metavar="ADDR",
        help="also serve the HTTP gateway and web page on HOST:PORT (e.g. 127.0.0.1:8080); "
        "another address than loopback needs --http-token",
    )
    serve.add_argument(
        "--http-token",
        type=_path,
        default=None,
        metavar="FILE",
        help="a file holding the bearer token that HTTP uploads, /api and /metrics require "
        "(downloads by key stay open)",
    )
    serve.add_argument(
        "--http-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the HTTP gateway is reached by (NAME, any port, or NAME:PORT; repeatable): "
        "it answers only requests for its own address (and localhost on loopback) or these names",
    )
    serve.add_argument("--replicas", type=_count, default=3, help="copies of each blob on other nodes (default 3)")
    serve.add_argument("--min-replicas", type=_count, default=0, help="fail a put below this many copies (default 0)")
    serve.add_argument(
        "--chunk-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="chunk size of new files: a power of two from 64K to 16M (default 1M); "
        "sizes are bytes, or with K, M, G, T (KiB, MiB, ...: powers of two)",
    )
    serve.add_argument(
        "--capacity", type=_size, default=None, metavar="SIZE", help="most bytes of blobs to store, e.g. 10G (default: no limit)"
    )
    serve.add_argument("--no-fsync", action="store_true", help="do not fsync blobs (faster, less durable)")
    for option, _, default, what in _TIMINGS:
        serve.add_argument(option, type=_seconds, default=None, metavar="SECONDS", help=f"{what} (default {default})")
    serve.add_argument(
        "--scrub-rate",
        type=_size,
        default=None,
        metavar="SIZE",
        help="bytes per second of stored blobs re-read and verified (default 1M; 0 = off)",
    )
    serve.add_argument(
        "--memory-budget",
        type=_size,
        default=None,
        metavar="SIZE",
        help="most bytes peers can make the node hold over all connections (frames arriving, answers "
        "unwritten); a peer over its share is slowed, then disconnected (default 256M, at least 65M)",
    )
    serve.add_argument(
        "--parallelism", type=_count, default=0, metavar="N", help="chunks in flight per put or get (0: twice the cores, 8 times for a put with fsync on)"
    )
    serve.add_argument("--no-keep-fetched", action="store_true", help="do not keep blobs fetched from peers")
    serve.add_argument(
        "--placement-diversity",
        choices=("prefix", "address", "none"),
        default=None,
        help="how copies spread over addresses: one per IP address, distinct /24 or /48 prefixes first (prefix, "
        "the default); one per IP address (address); rank alone (none). Loopback addresses count by port",
    )
    limits = serve.add_argument_group(
        "limits", "what outsiders and peers can take of the node (see SECURITY.md); counts are at least 1, "
        "a share per address at most the one per prefix, that at most the room"
    )
    for option, kind, default, what in _LIMITS:
        metavar = "SECONDS" if kind is _seconds else "N"
        limits.add_argument(option, type=kind, default=None, metavar=metavar, help=f"{what} (default {default})")
    # A test hook: holds every get just before it commits (see cas_core Faults).
    serve.add_argument("--test-pause-before-commit", type=Path, default=None, help=argparse.SUPPRESS)

    keygen = sub.add_parser("keygen", help="write a new network key to FILE (owner-only); give it to every node")
    keygen.add_argument("file", type=_path, metavar="FILE")
    keygen.add_argument("--json", action="store_true", help="print a machine-readable JSON result")
    keygen.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)

    put = sub.add_parser("put", parents=[common], help="store a file (or standard input: -); prints its key")
    put.add_argument("file", type=_path, metavar="FILE", help="the file to store; '-' reads standard input to its end")
    put.add_argument(
        "--name", default=None, help="the name 'cas ls' lists it under (default: FILE's name; standard input has none)"
    )

    get = sub.add_parser("get", parents=[common], help="get a file by key, to DEST or to standard output")
    get.add_argument("key", metavar="KEY")
    get.add_argument(
        "dest",
        nargs="?",
        type=_path_text,
        default=None,
        metavar="DEST",
        help="the file to write, or a directory to write it in under its name (from this node's list of "
        "files it put, else the key)",
    )
    get.add_argument(
        "-o", "--output", type=_path_text, default=None, metavar="FILE", help="write to FILE instead of DEST; '-' for standard output"
    )
    get.add_argument("--force", action="store_true", help="replace the file at DEST if it exists")

    stat = sub.add_parser("stat", parents=[common], help="size of a stored file and the nodes holding it")
    stat.add_argument("key", metavar="KEY")

    sub.add_parser("ls", parents=[common], help="the files this node put: time, size, name, key")
    sub.add_parser("peers", parents=[common], help="the node's peer table")
    sub.add_parser("status", parents=[common], help="the node's id, address and counters")
    return parser


# ---- output --------------------------------------------------------------------------------


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True), flush=True)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class _ProgressBar:
    """A tqdm bar on standard error, shown only when it is a terminal."""

    def __init__(self, description: str) -> None:
        self._description = description
        self._bar: Any = None

    @staticmethod
    def wanted() -> bool:
        return sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total or None,
                desc=self._description,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=False,
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _with_progress(description: str, run: Callable[[Optional[Callable[[int, int], None]]], Any]) -> Any:
    if not _ProgressBar.wanted():
        return run(None)
    bar = _ProgressBar(description)
    try:
        return run(bar)
    finally:
        bar.close()


# ---- subcommands ---------------------------------------------------------------------------


def _read_network_key(path: Optional[Path]) -> Optional[bytes]:
    if path is None:
        return None
    try:
        key = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--network-key: cannot read {path}: {e.strerror or e}") from None
    if len(key) != 32:
        raise UsageError(
            f"{path} is not a network key: it holds {len(key)} bytes, a key is 32 (make one with 'cas keygen FILE')"
        )
    return key


def _keygen(args: argparse.Namespace, data_dir: Path) -> int:
    from ._cas import generate_network_key

    path = args.file.absolute()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise errors.InvalidArgumentError(f"{path} exists already; not overwriting a key") from None
    except OSError as e:
        raise errors.DestinationError(f"cannot create {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(generate_network_key())
    if args.json:
        _print_json({"network_key": str(path)})
    else:
        print(f"cas: wrote a new network key to {path}; start every node of the network with --network-key {path}")
    return 0


def _serve(args: argparse.Namespace, data_dir: Path) -> int:
    from ._cas import Node

    if args.http_token is not None and args.http is None:
        raise UsageError("--http-token needs --http ADDR")
    if args.http_host and args.http is None:
        raise UsageError("--http-host needs --http ADDR")

    listen = None if args.listen.lower() == "none" else args.listen
    key_file = data_dir / "network_key"
    # The node logs that it made a key at info, which a user does not see by
    # default: said here, since every other node needs a copy of it.
    makes_key = listen is not None and args.network_key is None and not args.bootstrap and not key_file.exists()
    try:
        node = Node(
            data_dir,
            listen=listen,
            advertise=args.advertise,
            network_key=_read_network_key(args.network_key),
            bootstrap=args.bootstrap,
            replicas=args.replicas,
            min_replicas=args.min_replicas,
            chunk_size=args.chunk_size,
            capacity=args.capacity,
            fsync=not args.no_fsync,
            keep_fetched=not args.no_keep_fetched,
            parallelism=args.parallelism,
            scrub_rate=args.scrub_rate,
            memory_budget=args.memory_budget,
            placement_diversity=args.placement_diversity,
            **{keyword: getattr(args, keyword) for _, keyword, _, _ in _TIMINGS},
            **{_keyword(option): getattr(args, _keyword(option)) for option, _, _, _ in _LIMITS},
            _pause_before_commit=args.test_pause_before_commit,
        )
    except errors.InvalidArgumentError as e:
        # A setting the node refused (e.g. a chunk size that is not a power
        # of two, or --min-replicas above --replicas), named as typed.
        raise UsageError(_as_options(str(e))) from None
    stop = threading.Event()
    http = None
    try:
        if args.http is not None:
            try:
                http = node.serve_http(args.http, token_file=args.http_token, hosts=args.http_host)
            except errors.InvalidArgumentError as e:
                # No token for a public address, an unreadable token file, or a bad --http-host.
                raise UsageError(str(e)) from None
        sock = client.socket_path(data_dir)
        client.check_socket_path(sock)
        # The node holds the data directory's lock, so a socket left here is stale.
        node.serve_http(f"unix:{sock}")
    except BaseException:
        node.close()
        raise
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ready = {"id": node.id, "address": node.address, "socket": str(sock), "pid": os.getpid(), "http": http}
        if makes_key and key_file.exists():
            ready["created_network_key"] = str(key_file)
        if args.json:
            print(json.dumps(ready), flush=True)
        else:
            if "created_network_key" in ready:
                print(
                    f"cas: created a new network key, {key_file}: every node that joins this network needs a copy "
                    "(cas serve --network-key FILE)",
                    flush=True,
                )
            print(
                f"cas: node {node.id[:16]} serving {data_dir} at {node.address or '(no networking)'}; "
                f"control socket {sock}; " + (f"HTTP on http://{http}/; " if http else "") + "Ctrl-C stops it",
                flush=True,
            )
        joined = False
        while not stop.wait(1.0):
            joined = joined or any(p.state == "alive" for p in node.peers())
            refused = node.refused_bootstrap()
            if refused and not joined:
                # Every node that answered refused our key (the start already
                # fails when they answer at once): retrying cannot help.
                raise errors.NetworkError(
                    f"{', '.join(refused)} refused this node's network key, and no other node answered: this node "
                    "is not of their network (start it with the network's key: --network-key FILE)"
                )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.close()  # stops its HTTP servers
        sock.unlink(missing_ok=True)
    if not args.json:
        print("cas: node stopped", flush=True)
    return 0


def _put(args: argparse.Namespace, data_dir: Path) -> int:
    if args.name is not None and not args.name:
        raise UsageError("--name: an empty name")
    if str(args.file) == "-":
        path: Optional[Path] = None
        label = args.name or "standard input"
    else:
        path = args.file.absolute()
        if not path.is_file():
            reason = "is not a regular file" if path.exists() else "does not exist"
            raise errors.InputError(f"cannot read input {path}: it {reason}")
        label = args.name or path.name
    result = _with_progress(f"put {label}", lambda p: client.put(data_dir, path, p, name=args.name))
    if args.json:
        _print_json(result)
    else:
        print(result["key"], flush=True)
    reached, wanted = result["replicas"], result["replicas_wanted"]
    if reached < wanted:
        print(
            f"cas put: warning: {label} has {reached} of {wanted} copies on other nodes "
            "(too few alive peers); repair adds the rest when peers are reachable",
            file=sys.stderr,
        )
    elif not args.json:
        print(f"cas put: {label}: {_human_bytes(result['size'])}, {reached} copies on other nodes", file=sys.stderr)
    return 0


def _usage_error(args: argparse.Namespace, message: str) -> int:
    """A mistake in how the command was called: one line, exit 2."""
    if args.json:
        _print_json({"error": {"type": "UsageError", "message": message}})
    print(f"cas {args.command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _get(args: argparse.Namespace, data_dir: Path) -> int:
    if args.dest is not None and args.output is not None:
        return _usage_error(args, "give DEST or -o FILE, not both")
    target = args.output if args.output is not None else args.dest
    if target is None or str(target) == "-":
        if args.json:
            return _usage_error(args, "--json needs a DEST: the file's bytes would go to standard output")
        if target is None and sys.stdout.isatty():
            return _usage_error(args, "not writing a file's bytes to a terminal: give DEST, or -o - to do it anyway")
        return _cat(data_dir, args.key)
    dest = _destination(data_dir, args.key, target, args.force)
    result = _with_progress(f"get {dest.name}", lambda p: client.get(data_dir, args.key, dest, p))
    if args.json:
        _print_json(result)
    else:
        print(f"{result['dest']}: {result['size']} bytes", file=sys.stderr)
    return 0


def _destination(data_dir: Path, key: str, target: str, force: bool) -> Path:
    """Where `cas get` writes: `target`, or inside it when it is a directory
    (under the name this node put the file with, else the key). Every problem
    a destination can have that can be seen before the download is an error
    here, before anything is fetched."""
    dest = Path(target).absolute()
    if dest.is_dir():
        dest = dest / client.file_name(data_dir, key)
    elif target.endswith("/"):
        raise errors.DestinationError(f"cannot write destination {target}: no such directory")
    if dest.is_dir():
        raise errors.DestinationError(f"cannot write destination {dest}: it is a directory")
    parent = dest.parent
    if not parent.is_dir():
        reason = "is not a directory" if parent.exists() else "does not exist"
        raise errors.DestinationError(f"cannot write destination {dest}: its directory {parent} {reason}")
    if os.path.lexists(dest) and not force:
        raise errors.DestinationError(f"{dest} exists already; --force replaces it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise errors.DestinationError(f"cannot write destination {dest}: no permission to write in {parent}")
    return dest


def _cat(data_dir: Path, key: str) -> int:
    size, stream, conn = client.open_download(data_dir, key)
    bar = _ProgressBar("get") if _ProgressBar.wanted() and not sys.stdout.isatty() else None
    out = sys.stdout.buffer
    done = 0
    try:
        while done < size:
            block = client.read_block(stream)
            if not block:
                out.flush()
                client.why_cut(data_dir, key, done, size)
            out.write(block)
            done += len(block)
            if bar is not None:
                bar(done, size)
        out.flush()
    finally:
        if bar is not None:
            bar.close()
        conn.close()
    return 0


def _stat(args: argparse.Namespace, data_dir: Path) -> int:
    result = client.stat(data_dir, args.key)
    if args.json:
        _print_json(result)
        return 0
    print(f"size        {result['size']} bytes ({_human_bytes(result['size'])})")
    print(f"chunks      {result['chunks']} of {result['chunk_size']} bytes")
    print(f"manifest    {result['manifest_id']}")
    print(f"held by     {len(result['nodes'])} node(s)")
    for node in result["nodes"]:
        held = sum(node["id"] in h["nodes"] for h in result["holders"])
        me = " (this node)" if node["self"] else ""
        print(f"  {node['id'][:16]}  {node['address'] or '-':<22} {held}/{len(result['holders'])} blobs{me}")
    return 0


def _query(args: argparse.Namespace, data_dir: Path, what: str, render: Callable[[Dict[str, Any]], None]) -> int:
    """Asks the node one question (GET /api/WHAT); prints the answer as JSON or through `render`."""
    result = client.get_json(data_dir, f"/api/{what}")
    if what == "status":
        result["socket"] = str(client.socket_path(data_dir))
    if args.json:
        _print_json(result)
    else:
        render(result)
    return 0


def _print_peers(result: Dict[str, Any]) -> None:
    if not result["peers"]:
        print("no peers known")
    for p in result["peers"]:
        print(f"{p['id'][:16]}  {p['address']:<22} {p['state']:<8} seen {p['last_seen']:.1f}s ago")


def _print_files(result: Dict[str, Any]) -> None:
    import time

    if not result["files"]:
        print("no files put on this node")
    for f in result["files"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(f["time"]))
        print(f"{when}  {_human_bytes(f['size']):>10}  {f['name'] or '(no name)'}  {f['key']}")


def _print_status(result: Dict[str, Any]) -> None:
    stats = result["stats"]
    print(f"node      {result['id']}")
    print(f"address   {result['address'] or '(no networking)'}")
    print(f"data dir  {result['data_dir']}  (pid {result['pid']})")
    print(f"peers     {result['peers']['alive']} alive, {result['peers']['known']} known")
    for addr in result.get("unreachable_bootstrap", []):
        if result["peers"]["alive"]:
            # A node in a network no longer needs its bootstrap node.
            print(f"bootstrap {addr} not reached (not needed: the node has live peers)")
        else:
            print(f"bootstrap {addr} unreachable, still trying")
    print(f"stored    {stats['blobs_stored']} blobs, {_human_bytes(stats['bytes_stored'])}")
    if stats.get("cannot_write"):
        print("storage   CANNOT WRITE (disk full?): serving what it holds; see /health")
    print(
        f"verified  {stats['blobs_scrubbed']} blobs by scrub, {stats['scrub_corrupt']} corrupt, "
        f"{stats['scrub_missing']} missing ({stats['scrub_restored']} restored from peers); "
        f"{stats['blobs_repaired']} copies given by repair"
    )
    if "audits" in stats:
        print(f"audited   {stats['audits']} peers' copies by repair, {stats['audits_failed']} failed")
    if "memory_held" in stats:
        print(
            f"memory    {_human_bytes(stats['memory_held'])} of the budget held; "
            f"{stats['connections_over_budget']} connections closed over it"
        )


_COMMANDS: Dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "serve": _serve,
    "keygen": _keygen,
    "put": _put,
    "get": _get,
    "stat": _stat,
    "ls": lambda args, data_dir: _query(args, data_dir, "files", _print_files),
    "peers": lambda args, data_dir: _query(args, data_dir, "peers", _print_peers),
    "status": lambda args, data_dir: _query(args, data_dir, "status", _print_status),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).absolute()
    try:
        if getattr(args, "key", None) is not None:
            # Checked here, before the node is asked anything (a bad key is bad
            # usage); as pasted, perhaps with a newline, which is ignored.
            from ._cas import _parse_key

            args.key = _parse_key(args.key)
        return _COMMANDS[args.command](args, data_dir)
    except UsageError as e:
        return _usage_error(args, str(e))
    except errors.CasError as e:
        _report(args, e)
        if isinstance(e, errors.InvalidKeyError):
            return EXIT_USAGE
        return EXIT_NO_NODE if isinstance(e, errors.NoNodeRunningError) else EXIT_FAILED
    except KeyboardInterrupt:
        if args.json:
            _print_json({"error": {"type": "Interrupted", "message": "interrupted"}})
        print("cas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our standard output went away (cas get KEY | head).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as e:
        # Anything the checks above did not foresee: one line, never a traceback.
        _report(args, errors.CasError(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"))
        return EXIT_FAILED


def _report(args: argparse.Namespace, e: errors.CasError) -> None:
    if args.json:
        # The public class (a private one, such as the client's _Lost, names its base).
        name = next(c.__name__ for c in type(e).__mro__ if not c.__name__.startswith("_"))
        _print_json({"error": {"type": name, "message": str(e)}})
    print(f"cas: error: {e}", file=sys.stderr)


