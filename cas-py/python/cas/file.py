"""`cas.File`: a stored file opened for reading, as a standard binary file."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["File"]


class File(io.RawIOBase):
    """A read-only, seekable binary file over a stored file (from `Node.open`).

    It fetches only the chunks it reads, so a seek and a short read of a huge
    file cost one chunk; read in order, it fetches the next chunks ahead. Wrap it in `io.BufferedReader` for many tiny reads,
    or `io.TextIOWrapper` for text.
    """

    def __init__(self, reader: Any) -> None:
        super().__init__()
        self._reader = reader

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return int(self._reader.size)

    @property
    def chunks_fetched(self) -> int:
        """How many chunks have been fetched so far."""
        return int(self._reader.chunks_fetched)

    def readable(self) -> bool:
        self._check_open()
        return True

    def seekable(self) -> bool:
        self._check_open()
        return True

    def writable(self) -> bool:
        self._check_open()
        return False

    def readinto(self, buffer: Any) -> int:
        """Fills `buffer` (fewer bytes only at the end of the file), a piece
        at a time: the caller sized it, so any size is allowed."""
        self._check_open()
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            data = self._reader.read(min(len(view) - filled, self._reader.piece))
            if not data:
                break
            view[filled : filled + len(data)] = data
            filled += len(data)
        return filled

    def read(self, size: int | None = -1) -> bytes:
        """Reads `size` bytes, or all the rest when it is negative or None.
        More than the node's ``max_get_bytes`` raises `InvalidArgumentError`
        before anything is fetched: read in pieces, use `readinto`, or
        `Node.get` the file to disk instead."""
        self._check_open()
        return bytes(self._reader.read(-1 if size is None else size))

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        return int(self._reader.seek(offset, whence))

    def tell(self) -> int:
        self._check_open()
        return int(self._reader.tell())

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"size={self.size}"
        return f"<cas.File {state}>"

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
