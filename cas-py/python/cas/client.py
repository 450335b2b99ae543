"""How the ``cas`` commands reach ``cas serve``: the node's HTTP API (the
gateway of crate cas-http, see the README's "HTTP gateway") on the data
directory's Unix socket ``<data_dir>/control.sock`` (mode 0600: only its
owner may connect).

``cas put`` streams the file in ``POST /cas``; ``cas get`` streams ``GET
/cas/KEY`` into a temporary file beside DEST, renamed at the end (nothing
at DEST after a failure or Ctrl-C); ``stat``, ``ls``, ``peers`` and
``status`` read ``/api/...``. A failure answers a JSON body whose ``kind``
names the error class; a download cut part way is explained by
``/api/cut/KEY``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, NoReturn, Optional, Tuple, Type

from . import errors

__all__ = ["SOCKET_NAME", "socket_path", "check_socket_path", "get_json", "file_name", "put", "get", "open_download", "why_cut"]

SOCKET_NAME = "control.sock"
#: Bytes per read or write of a file's stream.
BLOCK = 1024 * 1024

ProgressFn = Callable[[int, int], None]

# The gateway's error kinds, as exception classes.
_KINDS: Dict[str, Type[errors.CasError]] = {
    "invalid_key": errors.InvalidKeyError,
    "not_found": errors.NotFoundError,
    "integrity": errors.IntegrityError,
    "input": errors.InputError,
    "storage_full": errors.StorageFullError,
    "replication": errors.ReplicationError,
    "network": errors.NetworkError,
    "timeout": errors.TimeoutError,
    "invalid_argument": errors.InvalidArgumentError,
    "closed": errors.ClosedError,
    "cancelled": errors.CancelledError,
}


def socket_path(data_dir: os.PathLike[str] | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


def check_socket_path(path: Path) -> None:
    # sun_path holds 108 bytes including the terminating NUL; the socket is
    # bound in a private directory beside it first (12 more bytes).
    if len(os.fsencode(path)) > 107 - 12:
        raise errors.InvalidArgumentError(
            f"the control socket path {path} is too long for a Unix socket; use a data directory with a shorter path"
        )


class _Connection(http.client.HTTPConnection):
    """HTTP/1.1 over the data directory's Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__("localhost", blocksize=BLOCK)
        self.data_dir = data_dir
        self.path = socket_path(data_dir)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError) as e:
            sock.close()
            raise errors.NoNodeRunningError(
                f"no CAS node is running on data directory {self.data_dir} ({self.path}: {e.strerror}); "
                f"start one with: cas serve --data-dir {self.data_dir}"
            ) from None
        except OSError as e:
            sock.close()
            raise errors.CasError(f"cannot connect to the control socket {self.path}: {e.strerror or e}") from None
        self.sock = sock


def _key_path(key: str) -> str:
    if not key:
        raise errors.InvalidKeyError("invalid key: the key is empty")
    return urllib.parse.quote(key, safe="")


def _exchange(
    data_dir: Path, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None
) -> Tuple[_Connection, http.client.HTTPResponse]:
    """Sends one request; returns the open connection and its response (the
    caller closes the connection)."""
    conn = _Connection(data_dir)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except errors.CasError:
            raise  # from the body's reader (an InputError is an OSError too)
        except OSError as e:
            # The node may answer before the body is all sent (an upload it
            # refuses: its disk is full) and close the connection; the send
            # then fails, and the answer it sent says why.
            response = _answer_after_failed_send(conn)
            if response is None:
                raise _lost(e) from None
            return conn, response
        return conn, conn.getresponse()
    except errors.CasError:
        conn.close()
        raise
    except (OSError, http.client.HTTPException, ValueError) as e:
        conn.close()
        raise _lost(e) from None
    except BaseException:
        conn.close()
        raise


def _answer_after_failed_send(conn: _Connection) -> Optional[http.client.HTTPResponse]:
    """The response the node sent before a send to it failed, if any."""
    try:
        if conn.sock is not None:
            conn.sock.settimeout(30)  # it has stopped reading: an answer is there or never comes
        return conn.getresponse()
    except (OSError, http.client.HTTPException, ValueError):
        return None


class _Lost(errors.CasError):
    """The connection to the node failed or carried something else than HTTP."""


def _lost(e: BaseException) -> BaseException:
    """A transport failure, as a CasError that says what happened."""
    if isinstance(e, http.client.RemoteDisconnected):
        return _Lost("the node closed the control connection without answering (did it stop?)")
    if isinstance(e, (http.client.HTTPException, ValueError)):
        return _Lost(f"the node sent a malformed reply ({e!r}); are cas and the node the same version?")
    if isinstance(e, OSError):
        return _Lost(f"lost the control connection to the node: {e}")
    return e


def _raise_for(response: http.client.HTTPResponse) -> NoReturn:
    """The error a non-2xx answer carries."""
    try:
        body = json.loads(response.read())
        message, kind = body["error"], body.get("kind")
    except (ValueError, KeyError, TypeError, OSError):
        raise errors.CasError(f"the node answered HTTP {response.status} {response.reason}") from None
    raise _KINDS.get(kind or "", errors.CasError)(message)


def _json(response: http.client.HTTPResponse) -> Any:
    try:
        return json.loads(response.read())
    except (ValueError, OSError, http.client.HTTPException) as e:
        raise _lost(e) from None


def get_json(data_dir: Path, path: str) -> Any:
    """GET `path` of the API; its JSON answer, or the error it carries."""
    conn, response = _exchange(data_dir, "GET", path)
    with contextlib.closing(conn):
        if response.status != 200:
            _raise_for(response)
        return _json(response)


def stat(data_dir: Path, key: str) -> Any:
    return get_json(data_dir, f"/api/stat/{_key_path(key)}")


def file_name(data_dir: Path, key: str) -> str:
    """The name to give the file of `key` in a directory: the last name this
    node put it under (``/api/files?key=KEY``), else the key itself."""
    files = get_json(data_dir, f"/api/files?key={_key_path(key)}")["files"]
    name = files[-1]["name"].replace("\\", "/").rsplit("/", 1)[-1] if files else ""
    return name if name not in ("", ".", "..") and "\0" not in name else key


def put(data_dir: Path, path: Optional[Path], progress: Optional[ProgressFn], name: Optional[str] = None) -> Dict[str, Any]:
    """Streams the file at `path` to the node, listed under `name` (default:
    the file's name). `path` None: standard input, to its end, sent in
    chunks (its size is not known; progress is told a total of 0)."""
    what = "standard input" if path is None else str(path)
    size: Optional[int] = None
    try:
        if path is None:
            f = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
        else:
            f = open(path, "rb")
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise errors.InputError(f"cannot read input {what}: {e.strerror or e}") from None

    def blocks() -> Any:
        done = 0
        while True:
            try:
                block = f.read(BLOCK)
            except OSError as e:
                raise errors.InputError(f"cannot read input {what}: {e.strerror or e}") from None
            if not block:
                break
            done += len(block)
            if progress is not None:
                progress(done, size or 0)
            yield block
        if size is not None and done != size:
            raise errors.InputError(f"cannot read input {what}: it changed size while it was being stored")

    if name is None:
        name = "" if path is None else path.name
    # Without a Content-Length, http.client sends an iterable body chunked.
    headers = {} if size is None else {"Content-Length": str(size)}
    with f:
        conn, response = _exchange(
            data_dir, "POST", f"/cas?name={urllib.parse.quote(name, safe='')}", body=blocks(), headers=headers
        )
    with contextlib.closing(conn):
        if response.status != 200:
            _raise_for(response)
        reply = _json(response)
    fields = ("key", "size", "chunks", "new_blobs", "replicas", "replicas_wanted")
    return {"path": "-" if path is None else str(path), **{field: reply[field] for field in fields}}


def open_download(data_dir: Path, key: str) -> Tuple[int, http.client.HTTPResponse, _Connection]:
    """Starts ``GET /cas/KEY``: (size, the response to read, its connection)."""
    try:
        conn, response = _exchange(data_dir, "GET", f"/cas/{_key_path(key)}")
    except _Lost:
        # Cut before even the head was sent.
        why_cut(data_dir, key, 0, None)
    if response.status != 200:
        with contextlib.closing(conn):
            _raise_for(response)
    return int(response.headers["Content-Length"]), response, conn


def why_cut(data_dir: Path, key: str, offset: int, size: Optional[int]) -> NoReturn:
    """A download stopped at `offset`: asks the node why (``/api/cut/KEY``)
    and raises that error."""
    try:
        conn, response = _exchange(data_dir, "GET", f"/api/cut/{_key_path(key)}")
        with contextlib.closing(conn):
            if response.status >= 400 and response.status != 404:
                _raise_for(response)
    except errors.NoNodeRunningError:
        pass
    if size is None:
        raise _Lost("the node closed the control connection without answering (did it stop?)")
    raise errors.CasError(f"the node stopped sending after {offset} of {size} bytes; try again")


def read_block(response: http.client.HTTPResponse) -> bytes:
    """The next block of a download, b"" at its end (or where it was cut)."""
    try:
        return response.read1(BLOCK) if hasattr(response, "read1") else response.read(BLOCK)
    except http.client.IncompleteRead as e:
        return bytes(e.partial)
    except (OSError, http.client.HTTPException):
        return b""


def get(data_dir: Path, key: str, dest: Path, progress: Optional[ProgressFn]) -> Dict[str, Any]:
    """Writes the file of `key` to `dest` (replacing it): into a temporary
    file beside it, renamed once every byte is there; nothing at `dest`
    after a failure or an interrupt."""
    # The temporary file first: a destination that cannot be written fails
    # before anything is fetched.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cas-get-", dir=dest.parent)
    except OSError as e:
        raise errors.DestinationError(f"cannot write destination {dest}: {e.strerror or e}") from None
    try:
        size, response, conn = open_download(data_dir, key)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    with contextlib.closing(conn):
        try:
            with os.fdopen(fd, "wb") as out:
                done = 0
                while done < size:
                    block = read_block(response)
                    if not block:
                        why_cut(data_dir, key, done, size)
                    try:
                        out.write(block)
                    except OSError as e:
                        raise errors.DestinationError(f"cannot write destination {dest}: {e.strerror or e}") from None
                    done += len(block)
                    if progress is not None:
                        progress(done, size)
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as e:
                    raise errors.DestinationError(f"cannot write destination {dest}: {e.strerror or e}") from None
            _pause_before_commit()
            try:
                os.replace(tmp, dest)
            except OSError as e:
                raise errors.DestinationError(f"cannot write destination {dest}: {e.strerror or e}") from None
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    return {"key": key, "dest": str(dest), "size": size}


def _pause_before_commit() -> None:
    """A test hook (CAS_TEST_PAUSE_BEFORE_COMMIT=DIR): says DIR/paused, then
    waits (at most 60 s) for DIR/release."""
    hook = os.environ.get("CAS_TEST_PAUSE_BEFORE_COMMIT")
    if not hook:
        return
    Path(hook, "paused").touch()
    deadline = time.monotonic() + 60
    while not Path(hook, "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
