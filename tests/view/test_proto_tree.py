"""The FUSE protocol module against byte strings, the tree and the request answers against
plain values and in-repo fakes (no kernel)."""

from __future__ import annotations

import errno
import os
import struct

import pytest
from shardcache_csi.view import proto
from shardcache_csi.view.fs import MountState, OpenStats, ViewFs
from shardcache_csi.view.tree import Tree


def request(opcode: int, nodeid: int, body: bytes, unique: int = 7) -> bytes:
    return proto.IN_HEADER.pack(40 + len(body), opcode, unique, nodeid, 1000, 1000, 42, 0, 0) + body


def test_struct_sizes_match_the_kernel_abi() -> None:
    assert proto.IN_HEADER.size == 40
    assert proto.OUT_HEADER.size == 16
    assert proto.ATTR.size == 88
    assert len(proto.encode_entry(None, 1)) == 128  # sizeof(struct fuse_entry_out)
    assert proto.INIT_OUT.size == 64
    assert proto.OPEN_OUT.size == 16
    assert proto.KSTATFS.size == 80
    assert proto.DEV_IOC_BACKING_OPEN == 0x4010E501
    assert proto.DEV_IOC_BACKING_CLOSE == 0x4004E502


def test_header_and_name_decode() -> None:
    h, body = proto.decode_header(request(proto.Op.LOOKUP, 1, b"train\0"))
    assert (h.opcode, h.unique, h.nodeid, h.uid, h.pid) == (1, 7, 1, 1000, 42)
    assert proto.decode_name(body) == b"train"


def test_error_reply_is_a_bare_negated_header() -> None:
    assert proto.reply_error(9, errno.EROFS) == struct.pack("<IiQ", 16, -errno.EROFS, 9)
    assert proto.notify_resend() == struct.pack("<IiQ", 16, 7, 0)


def test_init_offers_only_what_the_kernel_offered() -> None:
    body = struct.pack(
        "<IIIII", 7, 45, 131072, proto.INIT_EXT | proto.ASYNC_READ, proto.PASSTHROUGH >> 32
    ) + bytes(44)
    offered = proto.decode_init(body)
    answer = proto.negotiate(offered, want_passthrough=True, max_write=4096, max_pages=32)
    assert answer.minor == 40
    assert answer.flags & proto.PASSTHROUGH and answer.max_stack_depth == 2
    assert not answer.flags & proto.DO_READDIRPLUS  # not offered
    out = proto.encode_init(answer)
    major, minor, _ra, _flags = struct.unpack_from("<IIII", out)
    flags2, depth = struct.unpack_from("<II", out, 32)
    assert (major, minor, flags2 << 32 & proto.PASSTHROUGH, depth) == (7, 40, proto.PASSTHROUGH, 2)
    old = proto.decode_init(struct.pack("<IIII", 7, 31, 0, proto.ASYNC_READ))
    assert (
        not proto.negotiate(old, want_passthrough=True, max_write=1, max_pages=1).flags
        & proto.PASSTHROUGH
    )


def test_dirent_is_padded_to_eight_bytes() -> None:
    rec = proto.encode_dirent(5, 3, b"abc", proto.DT_REG)
    assert len(rec) == 32 and rec[:24] == struct.pack("<QQII", 5, 3, 3, 8) and rec[24:27] == b"abc"


def test_tree_lists_every_key_with_stable_ids() -> None:
    objects = [("b/2.bin", 20), ("a.txt", 1), ("b/1.bin", 10), ("b/c/3", 3), ("a.txt/x", 9)]
    tree, again = Tree(objects), Tree(reversed(objects))
    assert [(n.name, n.ino) for n in tree.nodes] == [(n.name, n.ino) for n in again.nodes]
    b = tree.lookup(proto.ROOT_ID, b"b")
    assert b is not None and b.is_dir and tree.attr(b).nlink == 3
    assert [name for _, name, _ in tree.entries(b, 0)] == [b".", b"..", b"1.bin", b"2.bin", b"c"]
    assert [name for _, name, _ in tree.entries(b, 3)] == [b"2.bin", b"c"]
    assert tree.files == 4 and tree.bytes == 34  # "a.txt/x" under a file is dropped


class FakeDevice:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.backed: list[int] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def backing_open(self, fd: int) -> int:
        self.backed.append(fd)
        return len(self.backed)


class FakeSource:
    """Local files are those in `local`; a fetch makes a file local unless it is `broken`."""

    def __init__(self, tmp: str, local: dict[str, bytes], broken: set[str]) -> None:
        self.tmp, self.local, self.broken = tmp, local, broken

    def _fd(self, key: str) -> int:
        path = os.path.join(self.tmp, key.replace("/", "_"))
        with open(path, "wb") as f:
            f.write(self.local[key])
        return os.open(path, os.O_RDONLY)

    def open_local(self, key: str, size: int) -> int | None:
        return self._fd(key) if key in self.local else None

    def fetch(self, key: str, size: int) -> int:
        if key in self.broken:
            raise OSError(errno.EIO, key)
        self.local[key] = b"x" * size
        return self._fd(key)


@pytest.fixture
def view(tmp_path) -> tuple[ViewFs, FakeDevice, list]:  # type: ignore[no-untyped-def]
    tree = Tree([("hit.bin", 3), ("miss.bin", 5), ("gone.bin", 1)])
    device, jobs = FakeDevice(), []
    fs = ViewFs(
        tree,
        FakeSource(str(tmp_path), {"hit.bin": b"abc"}, {"gone.bin"}),
        device,
        MountState(passthrough=True),
        OpenStats(),
        jobs.append,
    )
    return fs, device, jobs


def _open(fs: ViewFs, name: bytes, flags: int = os.O_RDONLY) -> int:
    node = fs.tree.lookup(proto.ROOT_ID, name)
    assert node is not None
    fs.handle(request(proto.Op.OPEN, node.ino, struct.pack("<II", flags, 0), unique=node.ino))
    return node.ino


def test_open_of_a_local_file_is_passed_through_at_once(view) -> None:  # type: ignore[no-untyped-def]
    fs, device, jobs = view
    ino = _open(fs, b"hit.bin")
    _fh, flags, backing = proto.OPEN_OUT.unpack_from(device.out[-1], 16)
    assert flags == proto.FOPEN_PASSTHROUGH | proto.FOPEN_NOFLUSH and backing == 1
    assert not jobs and fs.state.backing == {ino: 1}
    _open(fs, b"hit.bin")  # the same inode reuses its backing id
    assert len(device.backed) == 1 and fs.stats.take()["hit_opens"] == 2


def test_a_miss_is_answered_off_the_reading_thread(view) -> None:  # type: ignore[no-untyped-def]
    fs, device, jobs = view
    _open(fs, b"miss.bin")
    assert device.out == [] and len(jobs) == 1
    jobs.pop()()
    assert proto.OUT_HEADER.unpack_from(device.out[-1])[1] == 0
    _open(fs, b"gone.bin")
    jobs.pop()()
    assert proto.OUT_HEADER.unpack_from(device.out[-1])[1] == -errno.EIO
    counts = fs.stats.take()
    assert (counts["miss_opens"], counts["miss_bytes"], counts["failed_opens"]) == (1, 5, 1)


def test_writes_are_refused_with_erofs(view) -> None:  # type: ignore[no-untyped-def]
    fs, device, _ = view
    _open(fs, b"hit.bin", os.O_RDWR)
    fs.handle(request(proto.Op.MKDIR, 1, struct.pack("<II", 0o755, 0) + b"d\0"))
    fs.handle(request(proto.Op.ACCESS, 1, struct.pack("<II", os.W_OK, 0)))
    assert [proto.OUT_HEADER.unpack_from(o)[1] for o in device.out] == [-errno.EROFS] * 3


def test_lookup_of_an_unknown_name_is_a_cached_negative_entry(view) -> None:  # type: ignore[no-untyped-def]
    fs, device, _ = view
    fs.handle(request(proto.Op.LOOKUP, 1, b"nope\0"))
    nodeid, _gen, entry_valid = struct.unpack_from("<QQQ", device.out[-1], 16)
    assert nodeid == 0 and entry_valid > 3600


def test_a_file_the_kernel_will_not_back_is_served_by_read(view) -> None:  # type: ignore[no-untyped-def]
    fs, device, _ = view

    def refuse(fd: int) -> int:
        raise PermissionError(1, "no CAP_SYS_ADMIN")

    device.backing_open = refuse
    _open(fs, b"hit.bin")
    fh, flags, backing = proto.OPEN_OUT.unpack_from(device.out[-1], 16)
    assert flags == proto.FOPEN_KEEP_CACHE and backing == 0 and fh > 0
    fs.handle(request(proto.Op.READ, 2, struct.pack("<QQIIQII", fh, 1, 10, 0, 0, 0, 0)))
    assert device.out[-1][16:] == b"bc"
    fs.handle(request(proto.Op.RELEASE, 2, struct.pack("<QIIQ", fh, 0, 0, 0)))
    assert fs._fallback_fds == {}
