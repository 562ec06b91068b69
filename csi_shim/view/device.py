"""The `/dev/fuse` descriptor of one mount: read requests, write replies, register backing
files. The thin I/O shell around fs.py."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import threading

from . import proto

log = logging.getLogger(__name__)

#: a request never exceeds the header, a name and max_write; 1 MiB + a page covers READ
#: replies of max_read too (the buffer must be at least 8 KiB, FUSE_MIN_READ_BUFFER)
BUFFER_BYTES = 1024 * 1024 + 4096


def open_device() -> int:
    return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)


class FuseDevice:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        # a late answer (a miss that outlived its mount) must never reach another connection
        # that reused the descriptor number: writes and the close exclude each other
        self._lock = threading.Lock()
        self._closed = False

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the view's connection is closed")
            os.write(self.fd, data)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)

    def backing_open(self, fd: int) -> int:
        """Register `fd` as a backing file of this connection (CAP_SYS_ADMIN); its id."""
        arg = bytearray(proto.backing_map(fd))
        return int(fcntl.ioctl(self.fd, proto.DEV_IOC_BACKING_OPEN, arg, True))

    def read(self) -> bytes | None:
        """The next request; None once the file system is unmounted (ENODEV)."""
        while True:
            try:
                return os.read(self.fd, BUFFER_BYTES)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                    continue  # ENOENT: the request was interrupted before we read it
                if e.errno == errno.ENODEV:
                    return None
                raise


def is_dead(fd: int) -> bool:
    """True when the connection behind `fd` is gone (unmounted, aborted) or never mounted."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, ev in p.poll(0))
