"""mountinfo parsing, the stale-socket rule, the endpoint syntax and the error -> code table."""

from __future__ import annotations

import grpc
import pytest
from shardcache import errors
from shardcache_csi.mountinfo import mount_at, parse_mountinfo, unescape
from shardcache_csi.server import SocketAction, decide_socket, socket_path
from shardcache_csi.service import status_code_for

MOUNTINFO = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 259:1 /cache/s3/b/p /k/u/v/mount ro,nosuid,nodev,relatime shared:1 - ext4 /dev/sda1 rw
91 22 0:50 / /mnt/with\\040space rw,nosuid master:7 propagate_from:3 - tmpfs tmpfs rw,size=10k
92 90 0:51 / /k/u/v/mount rw - tmpfs none rw
"""


def test_parse_mountinfo() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert len(entries) == 4
    bind = entries[1]
    assert bind.root == "/cache/s3/b/p"
    assert bind.options == {"ro", "nosuid", "nodev", "relatime"}
    assert (bind.fs_type, bind.source) == ("ext4", "/dev/sda1")
    spaced = entries[2]
    assert spaced.mount_point == "/mnt/with space"
    assert (spaced.fs_type, spaced.source) == ("tmpfs", "tmpfs")  # after 2 optional fields


def test_mount_at_sees_the_top_of_a_stack() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    top = mount_at(entries, "/k/u/v/mount")
    assert top is not None and top.mount_id == 92
    assert mount_at(entries, "/var/lib/kubelet") is None


def test_unescape() -> None:
    assert unescape(r"a\040b\011c\012d\134e") == "a b\tc\nd\\e"


@pytest.mark.parametrize(
    ("exists", "is_socket", "answers", "action"),
    [
        (False, False, False, SocketAction.BIND),
        (True, True, False, SocketAction.REPLACE),
        (True, True, True, SocketAction.REFUSE),
        (True, False, False, SocketAction.REFUSE),
    ],
)
def test_decide_socket(exists: bool, is_socket: bool, answers: bool, action: SocketAction) -> None:
    assert decide_socket(exists, is_socket, answers) is action


def test_socket_path() -> None:
    assert socket_path("unix:///csi/csi.sock") == "/csi/csi.sock"
    assert socket_path("/csi/csi.sock") == "/csi/csi.sock"
    for bad in ("unix://csi.sock", "tcp://127.0.0.1:1", "csi.sock"):
        with pytest.raises(errors.ConfigError):
            socket_path(bad)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.TargetConflictError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.MountError(16, "busy"), grpc.StatusCode.INTERNAL),
        (errors.WaitTimeoutError("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ConfigError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnsafeKeyError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.PolicyDeniedError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.AccessDeniedError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (errors.UnavailableError("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.OverCapacityError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.CacheStateError("x"), grpc.StatusCode.INTERNAL),
        (OSError(16, "busy"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_codes(exc: BaseException, code: grpc.StatusCode) -> None:
    assert status_code_for(exc) is code


def test_every_kind_names_a_real_grpc_status() -> None:
    for codes in [*errors.CODES.values(), errors.UNKNOWN]:
        assert isinstance(grpc.StatusCode[codes.grpc], grpc.StatusCode)
