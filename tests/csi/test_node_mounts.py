"""NodePublishVolume / NodeUnpublishVolume end to end: a real gRPC client on the unix socket,
the plugin, real bind mounts, and the real `shardcache-agent` process on its unix socket,
prefetching from a moto S3 bucket.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import grpc
import pytest
from shardcache_csi.mountinfo import mount_at, read_mountinfo
from shardcache_csi.proto import csi_pb2

from .conftest import (
    NAMESPACE,
    POD_UID,
    RPC_TIMEOUT_S,
    Client,
    Env,
    needs_root,
    policy_for,
    publish_request,
)

pytestmark = [pytest.mark.mounts, needs_root]

FILES = {"train/0001.jpg": b"\xff\xd8 image one", "labels.csv": b"id,label\n1,cat\n"}


def publish(client: Client, req: csi_pb2.NodePublishVolumeRequest) -> None:
    client.node.NodePublishVolume(req, timeout=RPC_TIMEOUT_S)


def unpublish(client: Client, target: str, volume_id: str = "csi-0123abcd") -> None:
    client.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target),
        timeout=RPC_TIMEOUT_S,
    )


def code_of(call, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=RPC_TIMEOUT_S)
    return info.value.code()  # type: ignore[no-any-return]


def mount_options(path: str) -> frozenset[str] | None:
    entry = mount_at(read_mountinfo(), path)
    return None if entry is None else entry.options


def proc_mounts_options(path: str) -> set[str]:
    """The same flags as /proc/mounts shows them, the file an operator would look at."""
    with open("/proc/mounts") as f:
        lines = [line.split() for line in f]
    matching = [fields for fields in lines if fields[1] == path]
    assert matching, f"{path} is not in /proc/mounts"
    return set(matching[-1][3].split(","))


def assert_every_write_fails(target: str) -> None:
    existing = os.path.join(target, "labels.csv")
    writes = {
        "touch": lambda: open(os.path.join(target, "new-file"), "x").close(),
        "mkdir": lambda: os.mkdir(os.path.join(target, "new-dir")),
        "rm": lambda: os.unlink(existing),
        "chmod": lambda: os.chmod(existing, 0o777),
        "write into existing": lambda: open(existing, "r+b").close(),
        "truncate": lambda: os.truncate(existing, 0),
        "rename": lambda: os.rename(existing, os.path.join(target, "moved.csv")),
    }
    for name, write in writes.items():
        with pytest.raises(OSError) as info:
            write()
        assert info.value.errno == errno.EROFS, f"{name}: {info.value}"


def assert_nothing_published(env: Env, target: str) -> None:
    assert mount_options(target) is None
    assert not os.path.exists(target)
    assert not list(env.state_dir.glob("*.json"))


def test_publish_read_only_then_unpublish(env: Env, plugin: Client) -> None:
    env.fill(FILES)
    target = env.target()
    publish(plugin, publish_request(target, dataset=env.dataset))
    local = env.wait_local()

    for name, data in FILES.items():
        assert Path(target, name).read_bytes() == data
    assert {"ro", "nosuid", "nodev"} <= mount_options(target)  # type: ignore[operator]
    assert {"ro", "nosuid", "nodev"} <= proc_mounts_options(target)
    assert_every_write_fails(target)
    assert env.owners() == [POD_UID]
    # an object that appears later, fetched by the agent, shows up in the existing mount
    env.fill({"late.txt": b"the agent can still write its cache"})
    # policy applies; refresh: within listing_max_age_s the saved listing would be reused
    env.agent.client.register(env.dataset, "job-late", NAMESPACE, refresh=True)
    env.wait_local()
    assert Path(target, "late.txt").read_bytes() == b"the agent can still write its cache"
    env.agent.client.release(env.dataset, "job-late")
    # the objects and nothing else: the agent's progress lives apart (tests/csi/test_status_view)
    assert sorted(os.listdir(target)) == ["labels.csv", "late.txt", "train"]

    unpublish(plugin, target)
    assert_nothing_published(env, target)
    assert Path(local, "labels.csv").read_bytes() == FILES["labels.csv"]  # data untouched
    assert env.owners() == []


def test_publish_twice_is_idempotent(env: Env, plugin: Client) -> None:
    env.fill(FILES)
    target = env.target()
    publish(plugin, publish_request(target, dataset=env.dataset))
    publish(plugin, publish_request(target, dataset=env.dataset))
    stacked = [e for e in read_mountinfo() if e.mount_point == target]
    assert len(stacked) == 1
    unpublish(plugin, target)
    unpublish(plugin, target)  # an absent target unpublishes fine
    assert_nothing_published(env, target)


@pytest.mark.parametrize(
    "change",
    [
        {"dataset": "other/"},  # another dataset of the same bucket
        {"volume_id": "csi-ffff"},
        {"readonly": False},
    ],
)
def test_publish_with_other_arguments_is_already_exists(
    env: Env, plugin: Client, change: dict[str, object]
) -> None:
    env.fill(FILES)
    env.fill({"x": b"x"}, prefix="other/")
    target = env.target()
    publish(plugin, publish_request(target, dataset=env.dataset))
    env.wait_local()
    args = {"dataset": env.dataset, **change}
    if change.get("dataset"):
        args["dataset"] = env.bucket.url(str(change["dataset"]))
    code = code_of(plugin.node.NodePublishVolume, publish_request(target, **args))  # type: ignore[arg-type]
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert Path(target, "labels.csv").read_bytes() == FILES["labels.csv"]  # first one intact
    unpublish(plugin, target)
    assert_nothing_published(env, target)


def test_unpublish_of_a_never_published_target(env: Env, plugin: Client) -> None:
    target = env.target(volume="never")
    unpublish(plugin, target)
    assert not os.path.exists(target)


def test_two_volumes_of_one_pod_share_the_pin(env: Env, plugin: Client) -> None:
    env.fill(FILES)
    a, b = env.target(volume="a"), env.target(volume="b")
    publish(plugin, publish_request(a, dataset=env.dataset, volume_id="csi-a"))
    publish(plugin, publish_request(b, dataset=env.dataset, volume_id="csi-b"))
    env.wait_local()
    unpublish(plugin, a, "csi-a")
    assert env.owners() == [POD_UID]  # b still uses it
    assert Path(b, "labels.csv").exists()
    unpublish(plugin, b, "csi-b")
    assert env.owners() == []


@pytest.mark.parametrize(
    ("kwargs", "context", "code"),
    [
        ({"dataset": None}, {}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"dataset": "not-a-url"}, {}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"dataset": "file:///etc/"}, {}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"dataset": "memory://{bucket}/x/"}, {}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"dataset": "s3://{bucket}/a/../../../etc/"}, {}, grpc.StatusCode.INVALID_ARGUMENT),
        ({}, {"csi.storage.k8s.io/pod.uid": "../../etc"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({}, {"csi.storage.k8s.io/pod.namespace": "../x"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"dataset": "s3://bucket-b/secret/"}, {}, grpc.StatusCode.PERMISSION_DENIED),
        ({"namespace": "team-b"}, {}, grpc.StatusCode.PERMISSION_DENIED),
        ({"volume_id": ""}, {}, grpc.StatusCode.INVALID_ARGUMENT),
        ({}, {"partition": "2/2"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({}, {"partition": "index/2"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({}, {"partition": "x"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_publish_requests_leave_nothing(
    env: Env,
    plugin: Client,
    kwargs: dict[str, object],
    context: dict[str, str],
    code: grpc.StatusCode,
) -> None:
    env.fill(FILES)
    target = env.target()
    args = {"dataset": env.dataset, **kwargs}
    if isinstance(args["dataset"], str):
        args["dataset"] = args["dataset"].replace("{bucket}", env.bucket.name)
    req = publish_request(target, **args)  # type: ignore[arg-type]
    req.volume_context.update(context)
    assert code_of(plugin.node.NodePublishVolume, req) is code
    assert_nothing_published(env, target)
    assert env.registered() == []  # the agent was never asked


@pytest.mark.parametrize("mutate", ["no target", "not kubelet's", "no capability", "block"])
def test_malformed_requests(env: Env, plugin: Client, mutate: str) -> None:
    target = env.target()
    req = publish_request(target, dataset=env.dataset)
    if mutate == "no target":
        req.target_path = ""
    elif mutate == "not kubelet's":
        req.target_path = str(env.root / "elsewhere")
    elif mutate == "no capability":
        req.ClearField("volume_capability")
    else:
        req.volume_capability.block.SetInParent()
    assert code_of(plugin.node.NodePublishVolume, req) is grpc.StatusCode.INVALID_ARGUMENT
    assert_nothing_published(env, target)
    for bad in ("", str(env.root / "elsewhere")):
        request = csi_pb2.NodeUnpublishVolumeRequest(volume_id="v", target_path=bad)
        assert code_of(plugin.node.NodeUnpublishVolume, request) is grpc.StatusCode.INVALID_ARGUMENT
    request = csi_pb2.NodeUnpublishVolumeRequest(volume_id="", target_path=target)
    assert code_of(plugin.node.NodeUnpublishVolume, request) is grpc.StatusCode.INVALID_ARGUMENT


def test_agent_down_is_unavailable_and_leaves_nothing(env: Env, plugin: Client) -> None:
    env.fill(FILES)
    assert env.agent.terminate() == 0  # a stopped real agent: its socket file is gone
    target = env.target()
    assert (
        code_of(plugin.node.NodePublishVolume, publish_request(target, dataset=env.dataset))
        is grpc.StatusCode.UNAVAILABLE
    )
    assert_nothing_published(env, target)
    # the plugin itself is fine: its Probe says so, and kubelet does not restart it
    assert plugin.identity.Probe(csi_pb2.ProbeRequest(), timeout=RPC_TIMEOUT_S).ready.value is True

    env.agent.start()  # kubelet retries: now it works
    publish(plugin, publish_request(target, dataset=env.dataset))
    env.wait_local()
    assert Path(target, "labels.csv").exists()
    unpublish(plugin, target)


def test_agent_refusal_leaves_nothing(env: Env, plugin: Client) -> None:
    """The plugin's policy allows the dataset, the agent's own policy does not: the agent's
    refusal (403 policy_denied) reaches kubelet as PERMISSION_DENIED, and nothing is left."""
    env.fill(FILES)
    env.restart_agent(policy=policy_for([env.bucket.url("other/")]))
    target = env.target()
    assert (
        code_of(plugin.node.NodePublishVolume, publish_request(target, dataset=env.dataset))
        is grpc.StatusCode.PERMISSION_DENIED
    )
    assert_nothing_published(env, target)
    assert env.registered() == []
    env.restart_agent(policy=policy_for([env.bucket.url()]))  # the operator widens it
    publish(plugin, publish_request(target, dataset=env.dataset))  # kubelet's retry works
    env.wait_local()
    assert Path(target, "labels.csv").read_bytes() == FILES["labels.csv"]
    unpublish(plugin, target)


def test_unpublish_while_the_agent_is_down_defers_the_release(env: Env, plugin: Client) -> None:
    env.fill(FILES)
    target = env.target()
    publish(plugin, publish_request(target, dataset=env.dataset))
    env.wait_local()
    assert env.agent.terminate() == 0
    unpublish(plugin, target)  # the pod must not hang in Terminating because of the agent
    assert mount_options(target) is None and not os.path.exists(target)
    assert len(list(env.state_dir.glob("*.json"))) == 1  # the release is remembered
    env.agent.start()
    assert env.owners() == [POD_UID]  # pins survive an agent restart (they are in its index)
    unpublish(plugin, env.target(volume="other"))  # any later call retries it
    assert env.owners() == []
    assert not list(env.state_dir.glob("*.json"))


def test_half_done_publication_is_finished_on_retry(env: Env, plugin: Client) -> None:
    """A crash between the bind and the read-only remount leaves a writable bind; the next
    publish makes it read-only instead of stacking a second mount."""
    from shardcache_csi import mounter

    env.fill(FILES)
    target = env.target()
    publish(plugin, publish_request(target, dataset=env.dataset))
    local = env.wait_local()
    mounter.unmount(target)
    mounter._check(
        mounter._libc().mount(
            os.fsencode(str(local)), os.fsencode(target), None, mounter.MS_BIND, None
        ),
        "bind",
        target,
    )
    assert "ro" not in mount_options(target)  # type: ignore[operator]
    publish(plugin, publish_request(target, dataset=env.dataset))
    assert {"ro", "nosuid", "nodev"} <= mount_options(target)  # type: ignore[operator]
    assert len([e for e in read_mountinfo() if e.mount_point == target]) == 1
    unpublish(plugin, target)
    assert_nothing_published(env, target)


def test_identity_and_node_info(env: Env, plugin: Client) -> None:
    info = plugin.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=RPC_TIMEOUT_S)
    assert (info.name, info.vendor_version) == ("csi.shardcache.io", "test")
    caps = plugin.identity.GetPluginCapabilities(
        csi_pb2.GetPluginCapabilitiesRequest(), timeout=RPC_TIMEOUT_S
    )
    assert list(caps.capabilities) == []  # no controller service
    probe = plugin.identity.Probe(csi_pb2.ProbeRequest(), timeout=RPC_TIMEOUT_S)
    assert probe.HasField("ready") and probe.ready.value is True
    node_caps = plugin.node.NodeGetCapabilities(
        csi_pb2.NodeGetCapabilitiesRequest(), timeout=RPC_TIMEOUT_S
    )
    assert list(node_caps.capabilities) == []  # no staging
    assert (
        plugin.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=RPC_TIMEOUT_S).node_id
        == "node-1"
    )


@pytest.mark.parametrize(
    ("method", "request_type"),
    [
        ("NodeStageVolume", csi_pb2.NodeStageVolumeRequest),
        ("NodeUnstageVolume", csi_pb2.NodeUnstageVolumeRequest),
        ("NodeGetVolumeStats", csi_pb2.NodeGetVolumeStatsRequest),
        ("NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest),
    ],
)
def test_other_node_methods_are_unimplemented(
    env: Env, plugin: Client, method: str, request_type: type
) -> None:
    call = getattr(plugin.node, method)
    assert code_of(call, request_type(volume_id="v")) is grpc.StatusCode.UNIMPLEMENTED
    controller = plugin.channel.unary_unary("/csi.v1.Controller/CreateVolume")
    assert code_of(controller, b"") is grpc.StatusCode.UNIMPLEMENTED


def test_the_partition_attribute_reaches_the_agent_as_the_pods_share(
    env: Env, plugin: Client
) -> None:
    files = {f"shard-{i}.tar": os.urandom(1000 + i) for i in range(6)}
    env.fill(files)
    target = env.target()
    publish(plugin, publish_request(target, dataset=env.dataset, partition="1/3"))
    doc = env.agent.wait_status(env.dataset, ("partial",)).as_json()
    [share] = doc["shares"]
    assert share["partition"] == "1/3" and share["fraction_local"] == 1.0
    assert doc["objects_local"] == 2 and doc["objects_total"] == 6
    # a bind view lists what is local: the share (read-through lists all, fetching the rest)
    assert sorted(p.name for p in Path(target).glob("*.tar")) == ["shard-2.tar", "shard-3.tar"]
    unpublish(plugin, target)
    assert env.owners() == []
