"""What a put returns: the key, which is a `str`, and what the put did."""

from __future__ import annotations

from typing import Any, Dict


class PutResult(str):
    """The key of a stored file (a `str`: print it, compare it, pass it to
    `get`), with what the put did as attributes.

    `replicas` is the fewest copies on other nodes reached by any blob of the
    file; `replicas_wanted` is the node's `replicas` setting. Fewer than
    wanted means the node did not know enough alive peers: repair adds the
    missing copies when peers appear. `new_blobs` is 0 when the same content
    was stored before.
    """

    key: str
    size: int
    chunks: int
    new_blobs: int
    replicas: int
    replicas_wanted: int

    def __new__(
        cls, key: str, *, size: int, chunks: int, new_blobs: int, replicas: int, replicas_wanted: int
    ) -> "PutResult":
        self = super().__new__(cls, key)
        self.key = str(key)
        self.size = size
        self.chunks = chunks
        self.new_blobs = new_blobs
        self.replicas = replicas
        self.replicas_wanted = replicas_wanted
        return self

    def __getnewargs_ex__(self) -> Any:
        fields = self.as_dict()
        del fields["key"]
        return (self.key,), fields

    def as_dict(self) -> Dict[str, Any]:
        """The report as plain values (for JSON)."""
        fields = ("key", "size", "chunks", "new_blobs", "replicas", "replicas_wanted")
        return {name: getattr(self, name) for name in fields}
