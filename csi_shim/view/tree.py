"""The view's directory tree, built once from a dataset's manifest: pure data, no I/O.

Node ids are assigned in a fixed order (directories and files by sorted path), so the same
manifest always yields the same ids: a restarted server that rebuilds the tree from the
mount's saved manifest answers the kernel's cached node ids with the same nodes.

INVARIANT: node ids are 1..len(nodes); id 1 is the root; a node's parent is a directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import proto

#: every node shows this mtime: the manifest does not change under a running pod, and a
#: fixed time keeps loaders that compare mtimes (caches of decoded samples) stable
MTIME_S = 0


@dataclass(slots=True)
class Node:
    """One file or directory; slots, and no containers on files: a million-object manifest
    is a million of these."""

    ino: int
    parent: int
    name: bytes
    is_dir: bool
    size: int = 0
    #: the object's key relative to the dataset prefix (files only)
    key: str = ""
    children: dict[bytes, int] | None = None
    #: children in readdir order, filled once the tree is built
    listing: list[int] | None = None
    subdirs: int = 0


class Tree:
    def __init__(self, objects: Iterable[tuple[str, int]]) -> None:
        self.nodes: list[Node] = [
            Node(0, 0, b"", True, children={}),
            Node(proto.ROOT_ID, proto.ROOT_ID, b"", True, children={}),
        ]
        self.files = 0
        self.bytes = 0
        self._last_dir: str | None = None
        self._last_parent: Node | None = None
        for key, size in sorted(objects):
            self._add(key, size)
        for node in self.nodes:
            if node.children is not None:
                node.listing = sorted(node.children.values(), key=lambda i: self.nodes[i].name)
                node.subdirs = sum(1 for i in node.listing if self.nodes[i].is_dir)

    def _add(self, key: str, size: int) -> None:
        dirname, _, name = key.rpartition("/")
        if not _clean(name):
            return  # the agent refuses such keys before they reach a manifest
        if dirname != self._last_dir:
            # keys come sorted, so most share the previous key's directory: walk only on change
            self._last_dir, self._last_parent = dirname, self._walk(dirname)
        parent = self._last_parent
        if parent is None or parent.children is None or name.encode() in parent.children:
            return
        self._new(parent, name.encode(), False, size, key)
        self.files += 1
        self.bytes += size

    def _walk(self, dirname: str) -> Node | None:
        """The directory node of `dirname`, created as needed; None if a file is in the way
        (keys "a" and "a/b": the file wins) or a segment is not a clean name."""
        parent = self.nodes[proto.ROOT_ID]
        for part in dirname.split("/") if dirname else ():
            if not _clean(part) or parent.children is None:
                return None
            ino = parent.children.get(part.encode())
            parent = (
                self.nodes[ino]
                if ino is not None
                else self.nodes[self._new(parent, part.encode(), True)]
            )
        return parent if parent.children is not None else None

    def _new(self, parent: Node, name: bytes, is_dir: bool, size: int = 0, key: str = "") -> int:
        ino = len(self.nodes)
        self.nodes.append(
            Node(ino, parent.ino, name, is_dir, size, key, children={} if is_dir else None)
        )
        assert parent.children is not None
        parent.children[name] = ino
        return ino

    def get(self, ino: int) -> Node | None:
        return self.nodes[ino] if 0 < ino < len(self.nodes) else None

    def lookup(self, parent: int, name: bytes) -> Node | None:
        node = self.get(parent)
        if node is None or node.children is None:
            return None
        ino = node.children.get(name)
        return None if ino is None else self.nodes[ino]

    def attr(self, node: Node) -> proto.Attr:
        if node.is_dir:
            return proto.Attr(node.ino, 4096, proto.S_IFDIR | 0o555, 2 + node.subdirs, MTIME_S)
        return proto.Attr(node.ino, node.size, proto.S_IFREG | 0o444, 1, MTIME_S)

    def entries(self, node: Node, offset: int) -> Iterable[tuple[int, bytes, Node]]:
        """(next offset, name, node) from `offset` on: ".", "..", then the children."""
        if offset <= 0:
            yield 1, b".", node
        if offset <= 1:
            yield 2, b"..", self.nodes[node.parent]
        listing = node.listing or []
        for i in range(max(0, offset - 2), len(listing)):
            child = self.nodes[listing[i]]
            yield i + 3, child.name, child


def _clean(name: str) -> bool:
    return name not in ("", ".", "..")
