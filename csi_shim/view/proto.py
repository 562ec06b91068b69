"""The FUSE kernel protocol as plain data: opcodes, struct layouts, pure encode/decode.

Why hand-written: the read-through view needs FUSE passthrough (protocol 7.40: the
`FUSE_PASSTHROUGH` INIT flag, `backing_id` in `fuse_open_out`, the `FUSE_DEV_IOC_BACKING_OPEN`
ioctl) and a server that can take over a live `/dev/fuse` connection (`FUSE_NOTIFY_RESEND`).
Debian 12's libfuse 3.14 predates both, and every Python binding on PyPI (pyfuse3, llfuse,
fusepy, mfusepy, fuse-python) wraps libfuse, so none can offer them here. The protocol itself
is a small, documented binary ABI (`include/uapi/linux/fuse.h`); this module states the part
a read-only file system speaks, and nothing here does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

KERNEL_VERSION = 7
#: the minor version this server speaks: 7.40 brought passthrough and NOTIFY_RESEND
KERNEL_MINOR_VERSION = 40
ROOT_ID = 1


class Op(IntEnum):
    LOOKUP = 1
    FORGET = 2
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    STATX = 52


#: requests that would change the file system: all answered EROFS
WRITING_OPS = frozenset(
    {
        Op.SETATTR,
        Op.SYMLINK,
        Op.MKNOD,
        Op.MKDIR,
        Op.UNLINK,
        Op.RMDIR,
        Op.RENAME,
        Op.LINK,
        Op.WRITE,
        Op.SETXATTR,
        Op.REMOVEXATTR,
        Op.CREATE,
        Op.FALLOCATE,
        Op.RENAME2,
        Op.COPY_FILE_RANGE,
        Op.TMPFILE,
    }
)
#: requests the kernel sends without expecting an answer
NO_REPLY_OPS = frozenset({Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT})

# INIT flags (fuse_init_in.flags | flags2 << 32)
ASYNC_READ = 1 << 0
BIG_WRITES = 1 << 5
DO_READDIRPLUS = 1 << 13
READDIRPLUS_AUTO = 1 << 14
PARALLEL_DIROPS = 1 << 18
MAX_PAGES = 1 << 22
INIT_EXT = 1 << 30
PASSTHROUGH = 1 << 37
HAS_RESEND = 1 << 39

# fuse_open_out.open_flags
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_CACHE_DIR = 1 << 3
FOPEN_NOFLUSH = 1 << 5
FOPEN_PASSTHROUGH = 1 << 7

NOTIFY_RESEND = 7
#: set in `unique` of a request the kernel sent again after FUSE_NOTIFY_RESEND
UNIQUE_RESEND = 1 << 63

# ioctls on the /dev/fuse descriptor: _IOW(229, nr, size)
_IOC_WRITE = 1


def _iow(nr: int, size: int) -> int:
    return (_IOC_WRITE << 30) | (size << 16) | (229 << 8) | nr


DEV_IOC_BACKING_OPEN = _iow(1, 16)  # struct fuse_backing_map
DEV_IOC_BACKING_CLOSE = _iow(2, 4)  # uint32_t

S_IFDIR = 0o040000
S_IFREG = 0o100000
DT_DIR = 4
DT_REG = 8

IN_HEADER = struct.Struct("<IIQQIIIHH")  # fuse_in_header: 40 bytes
OUT_HEADER = struct.Struct("<IiQ")  # fuse_out_header: 16 bytes
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr: 88 bytes
ENTRY_HEAD = struct.Struct("<QQQQII")  # fuse_entry_out up to the attr: 40 bytes
ATTR_OUT_HEAD = struct.Struct("<QII")  # fuse_attr_out up to the attr: 16 bytes
INIT_IN = struct.Struct("<IIIII")  # major, minor, max_readahead, flags, flags2 (then unused)
INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")  # fuse_init_out: 64 bytes
OPEN_IN = struct.Struct("<II")
OPEN_OUT = struct.Struct("<QIi")
READ_IN = struct.Struct("<QQII")  # fh, offset, size, read_flags (then lock_owner, flags)
RELEASE_IN = struct.Struct("<QII")
ACCESS_IN = struct.Struct("<II")
INTERRUPT_IN = struct.Struct("<Q")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
DIRENT_HEAD = struct.Struct("<QQII")  # ino, off, namelen, type: 24 bytes
KSTATFS = struct.Struct("<QQQQQIIII24x")  # fuse_kstatfs: 80 bytes
BACKING_MAP = struct.Struct("<iIQ")  # fd, flags, padding


@dataclass(frozen=True)
class Header:
    length: int
    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int


@dataclass(frozen=True)
class Attr:
    """What the view says about one node; nothing else of a real inode applies."""

    ino: int
    size: int
    mode: int
    nlink: int
    mtime_s: int
    blksize: int = 4096


@dataclass(frozen=True)
class InitIn:
    major: int
    minor: int
    max_readahead: int
    flags: int  # flags | flags2 << 32


@dataclass(frozen=True)
class InitReply:
    minor: int
    max_readahead: int
    flags: int
    max_write: int
    max_pages: int
    max_stack_depth: int
    max_background: int = 64
    congestion_threshold: int = 48


def decode_header(buf: bytes | memoryview) -> tuple[Header, memoryview]:
    """The request header and its body (extensions after the body are not used here)."""
    if len(buf) < IN_HEADER.size:
        raise ValueError(f"a FUSE request is at least {IN_HEADER.size} bytes, got {len(buf)}")
    length, opcode, unique, nodeid, uid, gid, pid, _ext, _pad = IN_HEADER.unpack_from(buf)
    return Header(length, opcode, unique, nodeid, uid, gid, pid), memoryview(buf)[
        IN_HEADER.size : length
    ]


def decode_init(body: bytes | memoryview) -> InitIn:
    if len(body) >= INIT_IN.size:
        major, minor, readahead, flags, flags2 = INIT_IN.unpack_from(body)
    else:  # a pre-7.36 kernel sends no flags2
        major, minor, readahead, flags = struct.unpack_from("<IIII", body)
        flags2 = 0
    if not flags & INIT_EXT:
        flags2 = 0
    return InitIn(major, minor, readahead, flags | (flags2 << 32))


def decode_name(body: bytes | memoryview) -> bytes:
    """A NUL-terminated name (LOOKUP)."""
    raw = bytes(body)
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def decode_forgets(opcode: int, nodeid: int, body: bytes | memoryview) -> list[tuple[int, int]]:
    """(nodeid, nlookup) pairs of a FORGET or BATCH_FORGET."""
    if opcode == Op.FORGET:
        return [(nodeid, FORGET_IN.unpack_from(body)[0])]
    count, _ = BATCH_FORGET_IN.unpack_from(body)
    return [
        FORGET_ONE.unpack_from(body, BATCH_FORGET_IN.size + i * FORGET_ONE.size)
        for i in range(count)
    ]


def reply(unique: int, payload: bytes = b"") -> bytes:
    return OUT_HEADER.pack(OUT_HEADER.size + len(payload), 0, unique) + payload


def reply_error(unique: int, errno_: int) -> bytes:
    """An error answer: the header alone, with the negated errno."""
    return OUT_HEADER.pack(OUT_HEADER.size, -errno_, unique)


def notify_resend() -> bytes:
    """Ask the kernel to send again every request a dead server read but never answered."""
    return OUT_HEADER.pack(OUT_HEADER.size, NOTIFY_RESEND, 0)


def encode_attr(a: Attr) -> bytes:
    blocks = (a.size + 511) // 512
    return ATTR.pack(
        a.ino,
        a.size,
        blocks,
        a.mtime_s,
        a.mtime_s,
        a.mtime_s,
        0,
        0,
        0,
        a.mode,
        a.nlink,
        0,
        0,
        0,
        a.blksize,
        0,
    )


def encode_entry(a: Attr | None, timeout_s: int) -> bytes:
    """fuse_entry_out; None is a negative entry (nodeid 0) the kernel caches for `timeout_s`."""
    if a is None:
        return ENTRY_HEAD.pack(0, 0, timeout_s, timeout_s, 0, 0) + bytes(ATTR.size)
    return ENTRY_HEAD.pack(a.ino, 0, timeout_s, timeout_s, 0, 0) + encode_attr(a)


def encode_attr_out(a: Attr, timeout_s: int) -> bytes:
    return ATTR_OUT_HEAD.pack(timeout_s, 0, 0) + encode_attr(a)


def encode_init(r: InitReply) -> bytes:
    return INIT_OUT.pack(
        KERNEL_VERSION,
        r.minor,
        r.max_readahead,
        r.flags & 0xFFFFFFFF,
        r.max_background,
        r.congestion_threshold,
        r.max_write,
        1,
        r.max_pages,
        0,
        r.flags >> 32,
        r.max_stack_depth,
        0,
    )


def encode_open(fh: int, open_flags: int, backing_id: int = 0) -> bytes:
    return OPEN_OUT.pack(fh, open_flags, backing_id)


def encode_statfs(files: int, blocks: int, bsize: int = 4096) -> bytes:
    return KSTATFS.pack(blocks, 0, 0, files, 0, bsize, 255, bsize, 0)


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def encode_dirent(ino: int, next_off: int, name: bytes, dtype: int) -> bytes:
    record = DIRENT_HEAD.pack(ino, next_off, len(name), dtype) + name
    return record + bytes(_pad8(len(record)) - len(record))


def encode_direntplus(entry: bytes, ino: int, next_off: int, name: bytes, dtype: int) -> bytes:
    """fuse_direntplus: an entry_out, then the dirent (whose padding covers both)."""
    return entry + encode_dirent(ino, next_off, name, dtype)


def backing_map(fd: int) -> bytes:
    return BACKING_MAP.pack(fd, 0, 0)


def negotiate(
    offered: InitIn, *, want_passthrough: bool, max_write: int, max_pages: int
) -> InitReply:
    """The INIT answer: only flags the kernel offered, passthrough only if asked for."""
    wanted = ASYNC_READ | DO_READDIRPLUS | READDIRPLUS_AUTO | PARALLEL_DIROPS | MAX_PAGES
    wanted |= BIG_WRITES | INIT_EXT
    if want_passthrough:
        wanted |= PASSTHROUGH
    flags = offered.flags & wanted
    # the backing files may sit on a stacked file system (overlayfs in a container): depth 2
    # is the most the kernel allows and lets passthrough open files on such a file system
    depth = 2 if flags & PASSTHROUGH else 0
    return InitReply(
        min(offered.minor, KERNEL_MINOR_VERSION),
        offered.max_readahead,
        flags,
        max_write,
        max_pages,
        depth,
    )
