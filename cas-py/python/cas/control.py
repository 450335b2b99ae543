"""The control socket of ``cas serve``: how the ``cas`` commands reach the
node running on a data directory.

A Unix socket ``<data_dir>/control.sock`` (mode 0600: only its owner may
connect), one request per connection, JSON lines:

    -> {"op": "put", "args": {"path": "/abs/file"}, "progress": true}
    <- {"progress": [done, total]}            (zero or more, if asked for)
    <- {"ok": true, "result": {...}}          or
    <- {"ok": false, "error": {"type": "NotFoundError", "message": "..."}}

The ``cat`` operation answers ``{"ok": true, "result": {"size": N}}`` and
then the file's N bytes in blocks, each a line ``{"data": n}`` followed by
n raw bytes; a failure part way is an ``{"ok": false, ...}`` line in place
of the next block (never raw bytes mistaken for content).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import socketserver
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, NoReturn, Optional

from . import errors
from ._cas import Cancel, Node

__all__ = ["SOCKET_NAME", "ControlServer", "call", "open_stream", "read_block", "socket_path"]

SOCKET_NAME = "control.sock"
#: Longest request line accepted (a request is small: an op and a path).
MAX_REQUEST = 64 * 1024
#: Least time between two progress messages.
PROGRESS_INTERVAL = 0.1
#: How often a request's watcher checks that its request is still running.
WATCH_INTERVAL = 0.1
#: Bytes per message of a ``cat`` stream.
STREAM_BLOCK = 1024 * 1024

ProgressFn = Callable[[int, int], None]


def socket_path(data_dir: os.PathLike[str] | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


def _check_length(path: Path) -> None:
    # sun_path holds 108 bytes including the terminating NUL.
    if len(os.fsencode(path)) > 107:
        raise errors.InvalidArgumentError(
            f"the control socket path {path} is longer than the 107 bytes a Unix socket allows; "
            "use a data directory with a shorter path"
        )


def _error_reply(e: BaseException) -> Dict[str, Any]:
    if isinstance(e, errors.CasError):
        return {"ok": False, "error": {"type": type(e).__name__, "message": str(e)}}
    return {"ok": False, "error": {"type": "CasError", "message": f"internal error in cas serve: {e!r}"}}


class _Throttle:
    """Forwards progress at most every PROGRESS_INTERVAL seconds, and the last one."""

    def __init__(self, send: Callable[[Dict[str, Any]], None]) -> None:
        self._send = send
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self._send({"progress": [done, total]})


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        try:
            line = self.rfile.readline(MAX_REQUEST)
            try:
                request = json.loads(line)
                op = request["op"]
                args = request.get("args") or {}
                if not isinstance(op, str) or not isinstance(args, dict):
                    raise ValueError("op must be a string and args an object")
            except (ValueError, KeyError, TypeError) as e:
                raise errors.InvalidArgumentError(f"malformed control request ({e}); is the cas command up to date?")
            forward = _Throttle(self._send) if request.get("progress") else None

            def progress(done: int, total: int) -> None:
                # Checked at every chunk, progress asked for or not: a client
                # that went away (Ctrl-C) cancels its put or get, and a
                # cancelled get leaves nothing at its destination.
                if self._client_gone():
                    raise BrokenPipeError("the cas command went away")
                if forward is not None:
                    forward(done, total)

            if op == "cat":
                self._cat(args)
                return
            cancel = Cancel()
            with self.server.working(op), self._cancel_when_client_leaves(cancel):
                result = self.server.dispatch(op, args, progress, cancel)
            self._send({"ok": True, "result": result})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (its progress callback failed, so did the operation)
        except Exception as e:  # noqa: BLE001 (every failure is reported to the client)
            try:
                self._send(_error_reply(e))
            except OSError:
                pass

    @contextlib.contextmanager
    def _cancel_when_client_leaves(self, cancel: Cancel) -> Iterator[None]:
        """Cancels `cancel` as soon as the client half-closes or drops the
        connection (Ctrl-C), even after the last progress report. The node
        settles the race with completion: a get either completes (and the
        client is told so) or is cancelled and leaves nothing at its
        destination."""
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                readable, _, _ = select.select([self.connection], [], [], WATCH_INTERVAL)
                if readable and not done.is_set():
                    # A request is one line: anything readable after it is the
                    # client leaving (EOF), or a protocol error; both cancel.
                    cancel.cancel()
                    return

        watcher = threading.Thread(target=watch, name="cas-control-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()  # before the connection is closed under it

    def _client_gone(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False  # connected, nothing sent: the normal case
        except OSError:
            return True

    def _send(self, obj: Dict[str, Any]) -> None:
        self.wfile.write(json.dumps(obj).encode() + b"\n")
        self.wfile.flush()

    def _cat(self, args: Dict[str, Any]) -> None:
        with self.server.node.open(_str_arg(args, "key")) as f:
            self._send({"ok": True, "result": {"size": f.size}})
            while True:
                block = f.read(STREAM_BLOCK)
                if not block:
                    break
                self.wfile.write(json.dumps({"data": len(block)}).encode() + b"\n")
                self.wfile.write(block)
            self.wfile.flush()


def _str_arg(args: Dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise errors.InvalidArgumentError(f"the control request lacks the string argument {name!r}")
    return value


def _abs_path_arg(args: Dict[str, Any], name: str) -> str:
    path = _str_arg(args, name)
    if not os.path.isabs(path):
        raise errors.InvalidArgumentError(f"{name} must be an absolute path, got {path!r}")
    return path


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves the control socket of `node` from Python threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, node: Node, path: Path) -> None:
        self.node = node
        self.path = path
        self._busy_lock = threading.Lock()
        self._busy = 0
        self._done = 0
        _check_length(path)
        # The node holds the data directory's lock, so a socket left here is stale.
        path.unlink(missing_ok=True)
        super().__init__(str(path), _Handler)

    @contextlib.contextmanager
    def working(self, op: str) -> Iterator[None]:
        """Counts the requests in progress and done (other than status queries)."""
        counted = op != "status"
        if counted:
            with self._busy_lock:
                self._busy += 1
        try:
            yield
        finally:
            if counted:
                with self._busy_lock:
                    self._busy -= 1
                    self._done += 1

    def server_bind(self) -> None:
        # Bound in a fresh 0700 directory, made 0600, then renamed into place:
        # nobody else can connect in between, and the process umask, which the
        # node's threads share (they create blob directories), is never touched.
        private = tempfile.mkdtemp(prefix=".c", dir=self.path.parent)
        staging = os.path.join(private, "s")
        try:
            _check_length(Path(staging))
            self.socket.bind(staging)
            os.chmod(staging, 0o600)
            os.replace(staging, self.path)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
            os.rmdir(private)
        self.server_address = str(self.path)

    def close(self) -> None:
        self.server_close()
        self.path.unlink(missing_ok=True)

    def dispatch(self, op: str, args: Dict[str, Any], progress: Optional[ProgressFn], cancel: Cancel) -> Any:
        node = self.node
        if op == "put":
            path = _abs_path_arg(args, "path")
            result = node.put(path, progress=progress)
            return {**result.as_dict(), "path": path}
        if op == "get":
            key, dest = _str_arg(args, "key"), _abs_path_arg(args, "dest")
            size = node.get(key, dest, progress=progress, cancel=cancel)
            return {"key": key, "dest": dest, "size": size}
        if op == "stat":
            return self._stat(_str_arg(args, "key"))
        if op == "files":
            return {"files": [{"key": f.key, "name": f.name, "size": f.size, "time": f.time} for f in node.files()]}
        if op == "peers":
            return {"self": {"id": node.id, "address": node.address}, "peers": [_peer(p) for p in node.peers()]}
        if op == "status":
            return self._status()
        raise errors.InvalidArgumentError(f"unknown control operation {op!r}; is the cas command up to date?")

    def _stat(self, key: str) -> Dict[str, Any]:
        node = self.node
        stat = node.stat(key)
        addresses: Dict[str, Optional[str]] = {p.id: p.address for p in node.peers()}
        addresses[node.id] = node.address
        return {
            "key": stat.key,
            "size": stat.size,
            "chunk_size": stat.chunk_size,
            "chunks": stat.chunks,
            "manifest_id": stat.manifest_id,
            "holders": [{"blob": blob, "nodes": nodes} for blob, nodes in stat.holders],
            "nodes": [{"id": n, "address": addresses.get(n), "self": n == node.id} for n in stat.nodes],
        }

    def _status(self) -> Dict[str, Any]:
        node = self.node
        stats = node.stats()
        peers = node.peers()
        return {
            "id": node.id,
            "address": node.address,
            "data_dir": str(node.data_dir),
            "socket": str(self.path),
            "pid": os.getpid(),
            "requests_in_progress": self._busy,
            "requests_done": self._done,
            "peers": {"known": len(peers), "alive": sum(p.state == "alive" for p in peers)},
            "unreachable_bootstrap": node.unreachable_bootstrap(),
            "stats": {
                name: getattr(stats, name)
                for name in (
                    "blobs_stored",
                    "bytes_stored",
                    "bytes_sent",
                    "bytes_received",
                    "requests_served",
                    "verification_failures",
                    "peers_alive",
                    "blobs_repaired",
                    "request_timeouts",
                    "blobs_scrubbed",
                    "bytes_scrubbed",
                    "scrub_corrupt",
                    "scrub_restored",
                )
            },
        }


def _peer(p: Any) -> Dict[str, Any]:
    return {"id": p.id, "address": p.address, "state": p.state, "last_seen": p.last_seen}


# ---- client side ---------------------------------------------------------------------------


def _connect(data_dir: Path) -> socket.socket:
    path = socket_path(data_dir)
    _check_length(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError) as e:
        sock.close()
        raise errors.NoNodeRunningError(
            f"no CAS node is running on data directory {data_dir} ({path}: {e.strerror}); "
            f"start one with: cas serve --data-dir {data_dir}"
        ) from None
    except OSError as e:
        sock.close()
        raise errors.CasError(f"cannot connect to the control socket {path}: {e.strerror or e}") from None
    return sock


def _reply(stream: Any, progress: Optional[ProgressFn]) -> Any:
    while True:
        message = _read_message(stream)
        if "progress" in message:
            if progress is not None:
                progress(*message["progress"])
            continue
        if message.get("ok"):
            return message.get("result")
        _raise_error(message)


class _HungUp(errors.CasError):
    """The node closed the control connection."""


def _read_message(stream: Any) -> Dict[str, Any]:
    """The next JSON line from the node; a `CasError` for anything else."""
    try:
        line = stream.readline()
    except OSError as e:  # a socket error, not our standard output's
        raise errors.CasError(f"lost the control connection to the node: {e}") from e
    if not line:
        raise _HungUp("the node closed the control connection without answering (did it stop?)")
    try:
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise errors.CasError(f"the node sent a malformed reply ({e}); are cas and the node the same version?") from e
    return message


def _raise_error(message: Dict[str, Any]) -> NoReturn:
    error = message.get("error") or {}
    raise errors.from_name(error.get("type", "CasError"), error.get("message", "unknown error"))


def _request(sock: socket.socket, op: str, args: Dict[str, Any], progress: bool) -> Any:
    stream = sock.makefile("rwb")
    try:
        stream.write(json.dumps({"op": op, "args": args, "progress": progress}).encode() + b"\n")
        stream.flush()
    except OSError as e:  # a socket error, not our standard output's
        raise errors.CasError(f"lost the control connection to the node: {e}") from e
    return stream


def call(data_dir: Path, op: str, args: Optional[Dict[str, Any]] = None, progress: Optional[ProgressFn] = None) -> Any:
    """Sends one request to the node of `data_dir`; returns its result or
    raises the `CasError` it answered with.

    On Ctrl-C the request is cancelled and the node's verdict awaited: if
    the operation completed first, its result is returned; otherwise
    KeyboardInterrupt is raised (and a cancelled get left nothing behind)."""
    with _connect(data_dir) as sock:
        stream = _request(sock, op, args or {}, progress is not None)
        try:
            return _reply(stream, progress)
        except KeyboardInterrupt:
            return _verdict_after_interrupt(sock, stream)


def _verdict_after_interrupt(sock: socket.socket, stream: Any) -> Any:
    """Tells the node to cancel (a half-close) and waits for how the request ended."""
    try:
        sock.shutdown(socket.SHUT_WR)
        return _reply(stream, None)
    except (errors.CancelledError, _HungUp, OSError):
        raise KeyboardInterrupt from None
    except errors.CasError as e:
        if "malformed reply" in str(e):  # the interrupted read lost part of a line
            raise KeyboardInterrupt from None
        raise


def open_stream(data_dir: Path, key: str) -> tuple[int, Any, socket.socket]:
    """Starts a ``cat`` of `key`: returns (size, binary stream of the bytes, socket)."""
    sock = _connect(data_dir)
    try:
        stream = _request(sock, "cat", {"key": key}, False)
        result = _reply(stream, None)
        return int(result["size"]), stream, sock
    except BaseException:
        sock.close()
        raise


def read_block(stream: Any) -> bytes:
    """The next block of a ``cat`` stream, b"" if the connection ended; raises
    the `CasError` the node sent instead if the read failed on its side."""
    try:
        message = _read_message(stream)
    except _HungUp:
        return b""  # the connection ended; the caller checks the length it got
    if "data" not in message:
        _raise_error(message)
    try:
        return bytes(stream.read(int(message["data"])))
    except OSError as e:
        raise errors.CasError(f"lost the control connection to the node: {e}") from e
