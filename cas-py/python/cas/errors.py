"""The exceptions raised by `cas`: one hierarchy under `CasError`.

Each class also derives from the built-in exception a Python programmer
would reach for, so ``except ValueError`` or ``except KeyError`` work too:

=====================  ===============================  =====================================
class                  also a                           raised when
=====================  ===============================  =====================================
InvalidKeyError        ValueError                       a key string is malformed
NotFoundError          KeyError                         no reachable node holds the key
IntegrityError         -                                stored bytes fail verification
InputError             OSError                          the file to put cannot be read
DestinationError       OSError                          the get destination cannot be written
StorageError           OSError                          the data directory cannot be used
StorageFullError       StorageError (OSError)           the capacity limit or disk is full
DataDirLockedError     -                                another node holds the data directory
NetworkError           ConnectionError (OSError)        talking to peers failed
TimeoutError           NetworkError, builtins.TimeoutError  a peer took too long
ReplicationError       -                                fewer than ``min_replicas`` copies
InvalidArgumentError   ValueError                       a setting or argument is out of range
ClosedError            ValueError                       a closed node or file is used
CancelledError         -                                the operation was cancelled (``cas.Cancel``)
NoNodeRunningError     -                                (command line) no ``cas serve`` on the data dir
=====================  ===============================  =====================================

The message (``str(e)``) always says what went wrong and what to do.
"""

from __future__ import annotations

import builtins

__all__ = [
    "CasError",
    "InvalidKeyError",
    "NotFoundError",
    "IntegrityError",
    "InputError",
    "DestinationError",
    "StorageError",
    "StorageFullError",
    "DataDirLockedError",
    "NetworkError",
    "TimeoutError",
    "ReplicationError",
    "InvalidArgumentError",
    "ClosedError",
    "CancelledError",
    "NoNodeRunningError",
]


class CasError(Exception):
    """Base class of every error raised by `cas`."""

    def __str__(self) -> str:
        # The plain message, even where the built-in base (KeyError, OSError)
        # would format its arguments differently.
        return str(self.args[0]) if self.args else ""


class InvalidKeyError(CasError, ValueError):
    """The key string is malformed (wrong prefix, length or characters)."""


class NotFoundError(CasError, KeyError):
    """No reachable node holds the key (or a blob of it)."""


class IntegrityError(CasError):
    """Stored bytes failed verification (hash, tag, length or manifest checks)."""


class InputError(CasError, OSError):
    """The file to store could not be opened or read (``filename`` says which)."""


class DestinationError(CasError, OSError):
    """The destination of a get could not be created or written."""


class StorageError(CasError, OSError):
    """The node's data directory could not be read or written."""


class StorageFullError(StorageError):
    """The node's capacity limit, or its disk, is full."""


class DataDirLockedError(CasError):
    """Another node (in this or another process) holds the data directory."""


class NetworkError(CasError, ConnectionError):
    """A network operation with a peer failed."""


class TimeoutError(NetworkError, builtins.TimeoutError):  # noqa: A001 (deliberately cas.TimeoutError)
    """A peer did not answer in time."""


class ReplicationError(CasError):
    """Fewer copies than ``min_replicas`` could be stored."""


class InvalidArgumentError(CasError, ValueError):
    """A setting or argument is out of range."""


class ClosedError(CasError, ValueError):
    """The node or file was closed and cannot be used any more."""


class CancelledError(CasError):
    """The operation was cancelled before it completed; it left nothing behind."""


class NoNodeRunningError(CasError):
    """(Command line) no ``cas serve`` is running on the data directory."""


_BY_NAME: "dict[str, type[CasError]]" = {name: globals()[name] for name in __all__}


def from_name(name: str, message: str) -> CasError:
    """Rebuilds an exception from its class name (as sent by ``cas serve``)."""
    cls = _BY_NAME.get(name, CasError)
    return cls(message)
