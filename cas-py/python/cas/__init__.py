"""CAS: a peer-to-peer, content-addressed, encrypted file store.

    import cas

    with cas.Node("/tmp/cas-node") as node:
        key = node.put("book.pdf")          # the key: a str, a capability
        print(key.replicas)                 # copies made on other nodes
        node.get(key, "copy.pdf")
        with node.open(key) as f:           # seekable, reads only what it needs
            f.seek(10)
            head = f.read(100)

Every blocking call releases the GIL. Errors derive from `cas.CasError`
(see `cas.errors`).
"""

from __future__ import annotations

from ._cas import Cancel, FileEntry, Node, Peer, Stat, Stats, __version__, generate_network_key
from . import errors
from .errors import *  # noqa: F403 (the exception hierarchy, listed in errors.__all__)
from .file import File
from .result import PutResult

__all__ = ["Node", "Cancel", "File", "FileEntry", "PutResult", "Stat", "Peer", "Stats", "generate_network_key", "__version__"]
__all__ += errors.__all__
