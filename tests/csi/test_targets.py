"""The plugin's pure decisions: target paths, request validation, idempotency, releases."""

from __future__ import annotations

from dataclasses import replace

import pytest
from shardcache.errors import ConfigError
from shardcache_csi.targets import (
    PublishAction,
    PublishSpec,
    decide_publish,
    parse_target_path,
    should_release,
    validate_publish,
)

KUBELET = "/var/lib/kubelet"
UID = "1f2e3d4c-0000-4000-8000-00000000a001"
TARGET = f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/data/mount"
CONTEXT = {
    "dataset": "s3://bucket-a/imagenet",
    "csi.storage.k8s.io/pod.name": "trainer-0",
    "csi.storage.k8s.io/pod.namespace": "team-a",
    "csi.storage.k8s.io/pod.uid": UID,
    "csi.storage.k8s.io/serviceAccount.name": "default",
    "csi.storage.k8s.io/ephemeral": "true",
}


def validate(
    context: dict[str, str] = CONTEXT,
    *,
    volume_id: str = "csi-1",
    target: str = TARGET,
    capability: str = "mount",
) -> PublishSpec:
    return validate_publish(
        volume_id, target, context, capability=capability, readonly=True, kubelet_dir=KUBELET
    )


def test_parse_target_path() -> None:
    assert parse_target_path(TARGET, KUBELET) == (UID, "data")
    assert parse_target_path(TARGET, KUBELET + "/") == (UID, "data")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "relative/pods/x/volumes/kubernetes.io~csi/v/mount",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/data/mount/",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/../../../../etc/mount",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/data/../data/mount",
        f"{KUBELET}/pods//volumes/kubernetes.io~csi/data/mount",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~empty-dir/data/mount",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/data/other",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/data/mount/deeper",
        f"{KUBELET}/pods/../volumes/kubernetes.io~csi/data/mount",
        f"{KUBELET}/pods/.hidden/volumes/kubernetes.io~csi/data/mount",
        f"/var/lib/kubeletX/pods/{UID}/volumes/kubernetes.io~csi/data/mount",
        "/etc",
        f"{KUBELET}/pods/{UID}/volumes/kubernetes.io~csi/da\x00ta/mount",
    ],
)
def test_target_paths_refused(path: str) -> None:
    with pytest.raises(ConfigError):
        parse_target_path(path, KUBELET)


def test_valid_request() -> None:
    spec = validate()
    assert spec.dataset == "s3://bucket-a/imagenet/"  # canonical, as a dataset prefix
    assert (spec.namespace, spec.pod_name, spec.pod_uid, spec.owner) == (
        "team-a",
        "trainer-0",
        UID,
        UID,
    )
    assert spec.ephemeral and spec.readonly and spec.prefetch == "all"


@pytest.mark.parametrize("view", ["read-through", "bind", "status"])
def test_view_attribute(view: str) -> None:
    assert validate(CONTEXT).view == "read-through"  # the default
    assert validate({**CONTEXT, "view": view}).view == view


def test_pod_uid_falls_back_to_the_path_and_kubelet_keys_we_do_not_read_are_ignored() -> None:
    ctx = {k: v for k, v in CONTEXT.items() if not k.endswith("pod.uid")}
    ctx["csi.storage.k8s.io/serviceAccount.tokens"] = '{"aud": {"token": "secret"}}'
    assert validate(ctx).pod_uid == UID


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": None}, "'dataset'"),
        ({"dataset": "  "}, "'dataset'"),
        ({"dataset": "file:///etc/"}, "embedded mode"),
        ({"dataset": "memory://bucket/x/"}, "embedded mode"),
        ({"dataset": "s3://bucket-a/a/../../other/"}, "`..`"),
        ({"dataset": "s3://bucket-a/a/./b/"}, "`.`"),
        ({"dataset": "s3://../x/"}, "bucket"),
        ({"dataset": "s3://bucket-a/a\\..\\b/"}, "control character"),
        ({"dataset": "not a url"}, "not a dataset URL"),
        ({"csi.storage.k8s.io/pod.namespace": None}, "podInfoOnMount"),
        ({"csi.storage.k8s.io/pod.namespace": "../kube-system"}, "not a valid name"),
        ({"csi.storage.k8s.io/pod.name": "a/../../b"}, "not a valid name"),
        ({"csi.storage.k8s.io/pod.uid": "../" + UID}, "not the pod UID"),
        ({"csi.storage.k8s.io/pod.uid": "2f2e3d4c-0000-4000-8000-00000000a001"}, "not the pod UID"),
        ({"csi.storage.k8s.io/serviceAccount.name": "x/../y"}, "not a valid name"),
        ({"csi.storage.k8s.io/ephemeral": "yes"}, "'true' or 'false'"),
        ({"prefetch": "some"}, "prefetch"),
        ({"view": "fuse"}, "view must be 'read-through', 'bind' or 'status'"),
        ({"view": ""}, "view must be"),
        ({"datset": "s3://bucket-a/x/"}, "unknown volume attributes"),
        ({"partition": "4/4"}, "partition must be I/N.*N-1 = 3"),
        ({"partition": "0/0"}, "partition must be I/N.*N must be between 1"),
        ({"partition": "index/4"}, "partition must be I/N.*webhook resolves"),
        ({"partition": "a/4"}, "partition must be I/N"),
        ({"partition": "-1/4"}, "partition must be I/N"),
    ],
)
def test_invalid_attributes(change: dict[str, str | None], message: str) -> None:
    ctx = dict(CONTEXT)
    for key, value in change.items():
        if value is None:
            ctx.pop(key)
        else:
            ctx[key] = value
    with pytest.raises(ConfigError, match=message):
        validate(ctx)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volume_id": ""}, "volume_id is required"),
        ({"volume_id": "x" * 300}, "256"),
        ({"target": ""}, "target_path is required"),
        ({"capability": ""}, "volume_capability is missing"),
        ({"capability": "block"}, "block volumes"),
    ],
)
def test_invalid_request_fields(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(**kwargs)  # type: ignore[arg-type]


SPEC = validate()
RO = frozenset({"ro", "nosuid", "nodev", "relatime"})


@pytest.mark.parametrize(
    ("recorded", "options", "expected"),
    [
        (None, None, PublishAction.MOUNT),  # first publish
        (SPEC, None, PublishAction.MOUNT),  # crashed before the mount
        (SPEC, RO, PublishAction.NOTHING),  # repeated publish
        (SPEC, frozenset({"rw", "relatime"}), PublishAction.REMOUNT),  # crashed between steps
        (SPEC, frozenset({"ro"}), PublishAction.REMOUNT),  # ro but suid/dev allowed
        (None, RO, PublishAction.CONFLICT),  # a mount we know nothing of
        (replace(SPEC, dataset="s3://bucket-a/other/"), RO, PublishAction.CONFLICT),
        (replace(SPEC, volume_id="csi-2"), None, PublishAction.CONFLICT),
        (replace(SPEC, readonly=False), RO, PublishAction.CONFLICT),
    ],
)
def test_decide_publish(
    recorded: PublishSpec | None, options: frozenset[str] | None, expected: PublishAction
) -> None:
    assert decide_publish(recorded, options, SPEC) is expected


def test_should_release_only_when_no_other_volume_of_the_pod_uses_the_dataset() -> None:
    other_target = replace(SPEC, target_path=TARGET.replace("/data/", "/data2/"))
    other_pod = replace(other_target, pod_uid="9f2e3d4c-0000-4000-8000-00000000a009")
    other_dataset = replace(other_target, dataset="s3://bucket-a/other/")
    assert should_release(SPEC, [])
    assert should_release(SPEC, [SPEC])  # its own record does not count
    assert should_release(SPEC, [other_pod, other_dataset])
    assert not should_release(SPEC, [other_target])


def test_spec_json_round_trip() -> None:
    assert PublishSpec.from_json(SPEC.to_json()) == SPEC
    with pytest.raises(ConfigError, match="lacks"):
        PublishSpec.from_json({"volume_id": "x"})


def test_view_attribute_defaults_to_read_through_and_old_records_are_bind_mounts() -> None:
    assert validate().view == "read-through"
    assert validate({**CONTEXT, "view": "bind"}).view == "bind"
    with pytest.raises(ConfigError, match="view must be"):
        validate({**CONTEXT, "view": "fuse"})
    old = {k: v for k, v in SPEC.to_json().items() if k != "view"}
    assert PublishSpec.from_json(old).view == "bind"


def test_partition_attribute_is_kept_canonical_and_optional() -> None:
    assert SPEC.partition == ""
    assert validate({**CONTEXT, "partition": "03/8"}).partition == "3/8"
    shared = validate({**CONTEXT, "partition": "3/8"})
    assert decide_publish(shared, RO, shared) is PublishAction.NOTHING
    assert decide_publish(SPEC, RO, shared) is PublishAction.CONFLICT  # another share
    assert PublishSpec.from_json(shared.to_json()) == shared


def test_records_written_before_partitions_existed_still_load() -> None:
    old = SPEC.to_json()
    del old["partition"]
    assert PublishSpec.from_json(old) == SPEC
