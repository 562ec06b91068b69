"""What the read-through view answers to each FUSE request: a read-only file system over a
manifest tree whose files are opened from the node's cache, or fetched first on a miss.

The answers are computed here; the seams do the I/O: `Device` writes replies and registers
backing files, `Source` opens a published file (locally, or after asking the agent), `Misses`
runs a blocking open off the reading thread. Reads of an open file never come here when the
kernel speaks passthrough: the file handle given back names a backing file, and the kernel
reads it directly. Without passthrough (an old kernel) READ is served from the file.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import proto
from .tree import Node, Tree

log = logging.getLogger(__name__)

#: the kernel keeps names and attributes this long: a manifest never changes under a mount
TIMEOUT_S = 365 * 24 * 3600
#: KEEP_CACHE or DIRECT_IO next to PASSTHROUGH make the kernel refuse the open
PASSTHROUGH_FLAGS = proto.FOPEN_PASSTHROUGH | proto.FOPEN_NOFLUSH


class Device(Protocol):
    def write(self, data: bytes) -> None: ...
    def backing_open(self, fd: int) -> int: ...


class Source(Protocol):
    def open_local(self, key: str, size: int) -> int | None:
        """A read-only descriptor of the published file, or None when it is not local."""

    def fetch(self, key: str, size: int) -> int:
        """Make the object local (bounded wait) and open it; raises OSError(EIO) when it
        cannot be had."""


@dataclass
class OpenStats:
    """Opens of files through the view, by outcome; bytes are the opened files' sizes."""

    hit_opens: int = 0
    hit_bytes: int = 0
    miss_opens: int = 0
    miss_bytes: int = 0
    failed_opens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, outcome: str, size: int) -> None:
        with self.lock:
            if outcome == "hit":
                self.hit_opens += 1
                self.hit_bytes += size
            elif outcome == "miss":
                self.miss_opens += 1
                self.miss_bytes += size
            else:
                self.failed_opens += 1

    def take(self) -> dict[str, int]:
        """The counts since the last `take`, and reset them (what is reported as a delta)."""
        with self.lock:
            out = {
                "hit_opens": self.hit_opens,
                "hit_bytes": self.hit_bytes,
                "miss_opens": self.miss_opens,
                "miss_bytes": self.miss_bytes,
                "failed_opens": self.failed_opens,
            }
            self.hit_opens = self.hit_bytes = self.miss_opens = self.miss_bytes = 0
            self.failed_opens = 0
            return out

    def give_back(self, delta: dict[str, int]) -> None:
        """A report that did not reach the agent is added back, to go with the next one."""
        with self.lock:
            for name, value in delta.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass
class MountState:
    """What must outlive the server for a takeover: the INIT outcome and the backing ids.

    A backing id belongs to the connection, not to the server: an inode with files open
    through one id refuses another, so a restarted server must reuse the ids already given
    out. `on_backing` persists each new id (the server appends it to the mount's state)."""

    passthrough: bool | None = None
    backing: dict[int, int] = field(default_factory=dict)
    on_backing: Callable[[int, int], None] = lambda ino, bid: None


class ViewFs:
    def __init__(
        self,
        tree: Tree,
        source: Source,
        device: Device,
        state: MountState,
        stats: OpenStats,
        run_blocking: Callable[[Callable[[], None]], None],
        *,
        max_write: int = 128 * 1024,
        passthrough: bool = True,
    ) -> None:
        self.tree = tree
        self.source = source
        self.device = device
        self.state = state
        self.stats = stats
        self.run_blocking = run_blocking
        self.max_write = max_write
        #: False: serve READ from this process even where the kernel offers passthrough
        self.want_passthrough = passthrough
        self.destroyed = False
        self._fallback_fds: dict[int, int] = {}
        self._next_fh = 1
        self._lock = threading.Lock()

    # -- dispatch -----------------------------------------------------------------------
    def handle(self, buf: bytes | memoryview) -> None:
        header, body = proto.decode_header(buf)
        if header.opcode in proto.NO_REPLY_OPS:
            return
        try:
            out = self.answer(header, body)
        except OSError as e:
            out = proto.reply_error(header.unique, e.errno or errno.EIO)
        except Exception:  # a malformed request must not stop the view: answer it EIO
            log.exception("request %d on node %d failed", header.opcode, header.nodeid)
            out = proto.reply_error(header.unique, errno.EIO)
        if out is not None:
            self._write(out)

    def answer(self, h: proto.Header, body: memoryview) -> bytes | None:
        """The reply to one request, or None when it is answered later (a miss)."""
        op, u = h.opcode, h.unique
        if op in proto.WRITING_OPS:
            return proto.reply_error(u, errno.EROFS)
        if op == proto.Op.INIT:
            return self._init(u, proto.decode_init(body))
        if op == proto.Op.DESTROY:
            self.destroyed = True
            return proto.reply(u)
        if op in (
            proto.Op.RELEASE,
            proto.Op.RELEASEDIR,
            proto.Op.FLUSH,
            proto.Op.FSYNC,
            proto.Op.FSYNCDIR,
        ):
            if op == proto.Op.RELEASE:
                self._release(proto.RELEASE_IN.unpack_from(body)[0])
            return proto.reply(u)
        if op == proto.Op.STATFS:
            return proto.reply(
                u, proto.encode_statfs(self.tree.files, (self.tree.bytes + 4095) // 4096)
            )
        node = self.tree.get(h.nodeid)
        if node is None:
            return proto.reply_error(u, errno.ENOENT if op == proto.Op.LOOKUP else errno.EIO)
        if op == proto.Op.LOOKUP:
            child = self.tree.lookup(node.ino, proto.decode_name(body))
            entry = None if child is None else self.tree.attr(child)
            return proto.reply(u, proto.encode_entry(entry, TIMEOUT_S))
        if op == proto.Op.GETATTR:
            return proto.reply(u, proto.encode_attr_out(self.tree.attr(node), TIMEOUT_S))
        if op == proto.Op.ACCESS:
            mask = proto.ACCESS_IN.unpack_from(body)[0]
            return proto.reply_error(u, errno.EROFS) if mask & os.W_OK else proto.reply(u)
        if op == proto.Op.OPENDIR:
            if not node.is_dir:
                return proto.reply_error(u, errno.ENOTDIR)
            return proto.reply(
                u, proto.encode_open(0, proto.FOPEN_KEEP_CACHE | proto.FOPEN_CACHE_DIR)
            )
        if op in (proto.Op.READDIR, proto.Op.READDIRPLUS):
            _fh, offset, size, _flags = proto.READ_IN.unpack_from(body)
            return proto.reply(u, self._readdir(node, offset, size, op == proto.Op.READDIRPLUS))
        if op == proto.Op.OPEN:
            return self._open(h, node, proto.OPEN_IN.unpack_from(body)[0])
        if op == proto.Op.READ:
            fh, offset, size, _flags = proto.READ_IN.unpack_from(body)
            return self._read(u, fh, offset, size)
        if op == proto.Op.READLINK:
            return proto.reply_error(u, errno.EINVAL)
        return proto.reply_error(u, errno.ENOSYS)

    # -- requests -----------------------------------------------------------------------
    def _init(self, unique: int, offered: proto.InitIn) -> bytes:
        if offered.major != proto.KERNEL_VERSION:
            return proto.reply_error(unique, errno.EPROTO)
        answer = proto.negotiate(
            offered, want_passthrough=self.want_passthrough, max_write=self.max_write, max_pages=256
        )
        self.state.passthrough = bool(answer.flags & proto.PASSTHROUGH)
        log.info(
            "FUSE %d.%d, passthrough %s",
            offered.major,
            answer.minor,
            "on" if self.state.passthrough else "off (READ served by this process)",
        )
        return proto.reply(unique, proto.encode_init(answer))

    def _readdir(self, node: Node, offset: int, size: int, plus: bool) -> bytes:
        out = bytearray()
        for next_off, name, child in self.tree.entries(node, offset):
            dtype = proto.DT_DIR if child.is_dir else proto.DT_REG
            if plus:
                # "." and ".." carry no entry: the kernel skips them without a lookup count
                dot = name in (b".", b"..")
                entry = proto.encode_entry(None if dot else self.tree.attr(child), TIMEOUT_S)
                record = proto.encode_direntplus(entry, child.ino, next_off, name, dtype)
            else:
                record = proto.encode_dirent(child.ino, next_off, name, dtype)
            if len(out) + len(record) > size:
                break
            out += record
        return bytes(out)

    def _open(self, h: proto.Header, node: Node, flags: int) -> bytes | None:
        if node.is_dir:
            return proto.reply_error(h.unique, errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            return proto.reply_error(h.unique, errno.EROFS)
        if self.state.passthrough:
            bid = self.state.backing.get(node.ino)
            if bid is not None:
                # the kernel still holds the verified file this id names (even if the cache
                # has evicted it since): no need to look at the disk again
                self.stats.add("hit", node.size)
                return proto.reply(h.unique, proto.encode_open(0, PASSTHROUGH_FLAGS, bid))
        fd = self.source.open_local(node.key, node.size)
        if fd is not None:
            self.stats.add("hit", node.size)
            return self._opened(h.unique, node, fd)
        self.run_blocking(lambda: self._open_miss(h.unique, node))
        return None

    def _open_miss(self, unique: int, node: Node) -> None:
        try:
            fd = self.source.fetch(node.key, node.size)
        except OSError as e:
            self.stats.add("failed", node.size)
            log.warning("open of %s failed: %s", node.key, e)
            self._write(proto.reply_error(unique, e.errno or errno.EIO))
            return
        self.stats.add("miss", node.size)
        try:
            out = self._opened(unique, node, fd)
        except OSError as e:
            out = proto.reply_error(unique, e.errno or errno.EIO)
        self._write(out)

    def _opened(self, unique: int, node: Node, fd: int) -> bytes:
        """Answer an open with the published file `fd` (this takes ownership of it)."""
        if not self.state.passthrough:
            return self._served(unique, fd)
        with self._lock:
            bid = self.state.backing.get(node.ino)
            if bid is None:
                try:
                    bid = self.device.backing_open(fd)
                except OSError as e:
                    # e.g. EPERM without CAP_SYS_ADMIN, or a file system the kernel will not
                    # stack on: this file is served by READ instead, never refused
                    log.warning("no passthrough for %s (%s): served by the view", node.key, e)
                    bid = None
                else:
                    self.state.backing[node.ino] = bid
                    self.state.on_backing(node.ino, bid)
        if bid is None:
            return self._served(unique, fd)
        os.close(fd)  # the kernel holds its own reference to the backing file
        return proto.reply(unique, proto.encode_open(0, PASSTHROUGH_FLAGS, bid))

    def _served(self, unique: int, fd: int) -> bytes:
        """Answer an open whose reads this process serves (READ) from `fd`."""
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._fallback_fds[fh] = fd
        return proto.reply(unique, proto.encode_open(fh, proto.FOPEN_KEEP_CACHE))

    def _release(self, fh: int) -> None:
        with self._lock:
            fd = self._fallback_fds.pop(fh, None)
        if fd is not None:
            os.close(fd)

    def _read(self, unique: int, fh: int, offset: int, size: int) -> bytes:
        with self._lock:
            fd = self._fallback_fds.get(fh)
        if fd is None:
            return proto.reply_error(unique, errno.EBADF)
        return proto.reply(unique, os.pread(fd, size, offset))

    def _write(self, data: bytes) -> None:
        try:
            self.device.write(data)
        except OSError as e:
            # ENOENT: the request was interrupted and is gone; anything else: unmounted
            if e.errno != errno.ENOENT:
                log.debug("reply not delivered: %s", e)
