"""The plugin trusts no path it did not compute, follows the policy file as it changes, and
reports its own health: a real agent process, real gRPC on a unix socket, real bind mounts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest
from shardcache.errors import CacheStateError
from shardcache_csi.proto import csi_pb2
from shardcache_csi.server import build_server
from shardcache_csi.targets import check_local_dir

from .conftest import (
    NAMESPACE,
    POD_UID,
    RPC_TIMEOUT_S,
    Env,
    make_driver,
    needs_root,
    policy_for,
    publish_request,
)

pytestmark = [pytest.mark.mounts, needs_root]

FILES = {"labels.csv": b"a,b\n1,2\n"}


def call_code(call, request) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        call(request, timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as e:
        return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == path for line in f)


def serve(env: Env, cache_dir: Path | None = None):  # type: ignore[no-untyped-def]
    from shardcache_csi.proto import csi_pb2_grpc

    driver = make_driver(env, cache_dir)
    server = build_server(driver, endpoint=env.endpoint, node_id="node-1", version="test")
    channel = grpc.insecure_channel(env.endpoint)
    return server, channel, csi_pb2_grpc.NodeStub(channel), csi_pb2_grpc.IdentityStub(channel)


def test_check_local_dir_accepts_only_the_computed_directory() -> None:
    check_local_dir("s3://b/p/", "/cache/data/s3/b/p", "/cache/data/s3/b/p")
    for reported in ("/", "/cache/data/s3/b", "/cache/data/s3/b/p/", "/etc", None, 7):
        with pytest.raises(CacheStateError, match="nothing is mounted"):
            check_local_dir("s3://b/p/", reported, "/cache/data/s3/b/p")


def test_an_agent_answer_outside_the_plugins_cache_root_mounts_nothing(env: Env) -> None:
    """The real agent answers with its own cache root; a plugin whose cache root differs
    (misconfigured, or an agent that is not the one it should trust) mounts nothing and
    leaves no pin behind."""
    env.fill(FILES)
    elsewhere = env.root / "elsewhere"
    server, channel, node, _ = serve(env, cache_dir=elsewhere)
    target = env.target()
    try:
        code = call_code(node.NodePublishVolume, publish_request(target, dataset=env.dataset))
        assert code is grpc.StatusCode.INTERNAL
        assert not mounted(target) and not os.path.exists(target)
        assert env.owners() == []  # the pin the agent took was released again
        assert not list(env.state_dir.glob("*.json"))
    finally:
        channel.close()
        server.stop(None).wait(5)


def test_the_plugin_opens_the_dataset_dir_without_following_symlinks(tmp_path: Path) -> None:
    """Its own step, apart from the agent (which refuses the same symlink on its side)."""
    import contextlib

    from shardcache.errors import CacheStateError, UnavailableError
    from shardcache.store.layout import Layout
    from shardcache.urls import parse_url
    from shardcache_csi.node import _open_under_root
    from shardcache_csi.targets import validate_publish

    layout = Layout(tmp_path / "cache")
    url = parse_url("s3://bkt/imagenet/").as_dataset()
    target = f"/var/lib/kubelet/pods/{POD_UID}/volumes/kubernetes.io~csi/data/mount"
    req = publish_request(target, dataset=str(url))
    spec = validate_publish(
        req.volume_id,
        target,
        dict(req.volume_context),
        capability="mount",
        readonly=True,
        kubelet_dir="/var/lib/kubelet",
    )
    with contextlib.ExitStack() as stack, pytest.raises(UnavailableError):
        _open_under_root(layout, url, spec, stack)  # not made yet: kubelet retries
    (tmp_path / "secret").mkdir()
    (layout.data_dir / "s3" / "bkt").mkdir(parents=True)
    (layout.data_dir / "s3" / "bkt" / "imagenet").symlink_to(tmp_path / "secret")
    with contextlib.ExitStack() as stack, pytest.raises(CacheStateError, match="not a plain"):
        _open_under_root(layout, url, spec, stack)
    (layout.data_dir / "s3" / "bkt" / "imagenet").unlink()
    (layout.data_dir / "s3" / "bkt" / "imagenet").mkdir()
    with contextlib.ExitStack() as stack:
        fd = _open_under_root(layout, url, spec, stack)
        assert os.readlink(f"/proc/self/fd/{fd}") == str(layout.dataset_dir(url))


def test_a_symlink_in_the_cache_is_never_followed(env: Env) -> None:
    """A dataset directory replaced by a symlink after the agent made it: nothing is mounted
    (the agent refuses to use it, and the plugin would not follow it either)."""
    env.fill(FILES)
    server, channel, node, _ = serve(env)
    try:
        target = env.target()
        request = publish_request(target, dataset=env.dataset)
        assert call_code(node.NodePublishVolume, request) is grpc.StatusCode.OK
        local = Path(env.wait_local())
        assert (
            call_code(
                node.NodeUnpublishVolume,
                csi_pb2.NodeUnpublishVolumeRequest(volume_id="csi-0123abcd", target_path=target),
            )
            is grpc.StatusCode.OK
        )
        secret = env.root / "secret"
        secret.mkdir()
        (secret / "key").write_text("node secret")
        moved = local.with_name(local.name + ".moved")
        local.rename(moved)
        local.symlink_to(secret)
        code = call_code(node.NodePublishVolume, publish_request(env.target(), dataset=env.dataset))
        assert code is not grpc.StatusCode.OK
        assert not mounted(env.target())
        assert not Path(env.target(), "key").exists()
    finally:
        channel.close()
        server.stop(None).wait(5)


def test_a_policy_edit_reaches_the_next_publish(env: Env) -> None:
    """Grant, revoke and grant again by editing the plugin's policy file, no restart."""
    env.fill(FILES)
    server, channel, node, _ = serve(env)
    try:
        first = env.target(volume="one")
        assert call_code(node.NodePublishVolume, publish_request(first, dataset=env.dataset)) is (
            grpc.StatusCode.OK
        )
        env.policy_file.write_text(json.dumps(policy_for([env.bucket.url("other/")])))
        second = env.target(volume="two")
        request = publish_request(second, dataset=env.dataset, volume_id="csi-two")
        assert call_code(node.NodePublishVolume, request) is grpc.StatusCode.PERMISSION_DENIED
        assert not mounted(second)
        assert mounted(first)  # a revocation stops new mounts; running pods keep theirs
        env.policy_file.write_text("{not json nor yaml: [")  # unusable: nothing allowed
        assert call_code(node.NodePublishVolume, request) is grpc.StatusCode.PERMISSION_DENIED
        env.policy_file.write_text(json.dumps(policy_for([env.bucket.url()])))
        assert call_code(node.NodePublishVolume, request) is grpc.StatusCode.OK
        assert mounted(second)
        for target, volume_id in ((first, "csi-0123abcd"), (second, "csi-two")):
            unpublish = csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target)
            assert call_code(node.NodeUnpublishVolume, unpublish) is grpc.StatusCode.OK
    finally:
        channel.close()
        server.stop(None).wait(5)


def test_probe_reports_the_plugin_not_the_agent(env: Env) -> None:
    server, channel, _, identity = serve(env)
    try:
        assert identity.Probe(csi_pb2.ProbeRequest(), timeout=RPC_TIMEOUT_S).ready.value
        assert env.agent.terminate() == 0
        assert identity.Probe(csi_pb2.ProbeRequest(), timeout=RPC_TIMEOUT_S).ready.value
        env.state_dir.chmod(0o500)  # the plugin cannot record a publication: not healthy
        try:
            if os.geteuid() == 0:  # root ignores modes; make the directory vanish instead
                env.state_dir.rename(env.state_dir.with_name("state.gone"))
            assert not identity.Probe(csi_pb2.ProbeRequest(), timeout=RPC_TIMEOUT_S).ready.value
        finally:
            gone = env.state_dir.with_name("state.gone")
            if gone.exists():
                gone.rename(env.state_dir)
            env.state_dir.chmod(0o700)
    finally:
        channel.close()
        server.stop(None).wait(5)
        env.agent.start()


assert NAMESPACE  # the policy entries above are for this namespace
