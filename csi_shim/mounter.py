"""Bind mounts through libc's mount(2) and umount2(2), called with ctypes.

Why libc rather than the `mount`/`umount` commands: the plugin's image then needs no
util-linux (a slim Python image has none, and busybox `mount` differs in its options), each
call is one system call with its errno (EINVAL, EBUSY, EPERM map to clear messages) instead
of parsing a child process's stderr, and there is no PATH or locale to depend on. The two
steps are what `mount --bind` and `mount -o remount,bind,ro,nosuid,nodev` do: a bind mount
ignores MS_RDONLY and friends on creation, so the flags are applied by a remount of the bind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from functools import cache

from shardcache.errors import MountError

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8


@cache
def _libc() -> ctypes.CDLL:
    # Loaded on first use, never at import; cached because dlopen of libc is idempotent.
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _check(result: int, what: str, path: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"{what} {path}: {os.strerror(err)}", path)


def bind_read_only(source: str, target: str) -> None:
    """Bind `source` onto `target`, then make that mount ro,nosuid,nodev (two system calls).

    If the remount fails, the half-made writable bind is taken down again before raising:
    a pod must never see the dataset writable, not even for a moment longer than needed.
    """
    if os.path.islink(target):
        raise MountError(errno.ELOOP, f"refusing to mount onto the symlink {target}", target)
    src, dst = os.fsencode(source), os.fsencode(target)
    _check(_libc().mount(src, dst, None, MS_BIND, None), "bind mount onto", target)
    try:
        remount_read_only(target)
    except MountError:
        unmount(target)
        raise


def remount_read_only(target: str) -> None:
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    _check(
        _libc().mount(None, os.fsencode(target), None, flags, None), "read-only remount of", target
    )


def unmount(target: str, *, lazy: bool = False) -> None:
    """Unmount `target`, without following a symlink planted there. EINVAL: not a mount."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0)
    _check(_libc().umount2(os.fsencode(target), flags), "unmount of", target)


MS_NOEXEC = 0x8
#: the flags of a FUSE view: read-only and inert, like the bind mount after its remount
FUSE_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
FUSE_TYPE = "fuse.shardcache"


def fuse_options(fd: int, max_read: int) -> str:
    """The data string of a FUSE mount: the device descriptor and who may enter it.

    `allow_other` lets the pod's non-root user in; `default_permissions` makes the kernel
    check the mode bits (0444 files, 0555 directories), so the server need not."""
    return (
        f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other,"
        f"default_permissions,max_read={max_read}"
    )


def mount_fuse(fd: int, target: str, max_read: int) -> None:
    """Mount the FUSE connection of the open /dev/fuse descriptor `fd` on `target`."""
    if os.path.islink(target):
        raise MountError(errno.ELOOP, f"refusing to mount onto the symlink {target}", target)
    data = fuse_options(fd, max_read).encode()
    _check(
        _libc().mount(b"shardcache", os.fsencode(target), FUSE_TYPE.encode(), FUSE_FLAGS, data),
        "FUSE mount onto",
        target,
    )
