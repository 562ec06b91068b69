"""Pure tests of the mutation and the review answer: plain values in, plain values out."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from shardcache.store.layout import Layout
from shardcache.urls import parse_url
from shardcache_cluster.podspec import DRIVER_NAME
from shardcache_cluster.policy import ALLOW_ALL, parse_policy
from shardcache_cluster.webhook.mutate import Settings, mutate
from shardcache_cluster.webhook.review import answer

SETTINGS = Settings(image="registry.example/shardcache:test")
DATASET_URL = "s3://bucket-a/imagenet/"
DATASET = {"shardcache.io/dataset": DATASET_URL}


def patched(
    kit: SimpleNamespace,
    pod: dict[str, Any],
    namespace: str = "team-a",
    settings: Settings = SETTINGS,
    policy: Any = ALLOW_ALL,
) -> dict[str, Any]:
    outcome = mutate(pod, namespace, settings, policy)
    assert outcome.kind in ("patch", "skip"), outcome
    import jsonpatch

    return jsonpatch.apply_patch(pod, list(outcome.patch))  # type: ignore[no-any-return]


def test_single_dataset_gets_a_read_only_csi_volume_in_every_container(kit):
    pod = kit.make_pod(DATASET)
    sidecar = {**pod["spec"]["containers"][0], "name": "sidecar", "image": "busybox"}
    pod["spec"]["containers"].append(sidecar)
    result = patched(kit, pod)
    assert result["spec"]["volumes"] == [
        {
            "name": "shardcache-data",
            "csi": {
                "driver": DRIVER_NAME,
                "readOnly": True,
                "volumeAttributes": {
                    "dataset": "s3://bucket-a/imagenet/",
                    "prefetch": "all",
                    "view": "read-through",
                },
            },
        }
    ]
    for container in result["spec"]["containers"]:
        assert {"name": "shardcache-data", "mountPath": "/data", "readOnly": True} in (
            container["volumeMounts"]
        )
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {
            "SHARDCACHE_DATASET": "s3://bucket-a/imagenet/",
            "SHARDCACHE_DATA_DIR": "/data",
            "SHARDCACHE_MOUNTS": '{"s3://bucket-a/imagenet/":"/data"}',
        }
    assert "initContainers" not in result["spec"]
    kit.validate_pod(result)
    assert kit.restricted_violations(result) == []


def test_the_schema_check_catches_an_invalid_pod(kit):
    import kubernetes_validate

    pod = kit.make_pod(DATASET)
    pod["spec"]["volumes"] = [{"name": "x", "csi": {"driver": DRIVER_NAME, "readonly": True}}]
    with pytest.raises(kubernetes_validate.ValidationError):
        kit.validate_pod(pod)


def test_mutation_is_idempotent_on_reinvocation(kit):
    pod = kit.make_pod({**DATASET, "shardcache.io/wait": "0.9"})
    once = patched(kit, pod)
    again = mutate(once, "team-a", SETTINGS, ALLOW_ALL)
    assert again.kind == "skip" and again.patch == ()


def test_named_datasets_mount_below_the_mount_path(kit):
    pod = kit.make_pod(
        {
            "shardcache.io/dataset.train": "gs://bkt/train",
            "shardcache.io/dataset.val-set": "gcs://bkt/val/",
            "shardcache.io/mount-path": "/mnt/ds/",
        }
    )
    result = patched(kit, pod)
    names = [v["name"] for v in result["spec"]["volumes"]]
    assert names == ["shardcache-train", "shardcache-val-set"]
    container = result["spec"]["containers"][0]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        "/mnt/ds/train",
        "/mnt/ds/val-set",
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SHARDCACHE_DATASET_TRAIN"] == "gs://bkt/train/"
    assert env["SHARDCACHE_DATASET_VAL_SET"] == "gs://bkt/val/"
    assert env["SHARDCACHE_DATA_DIR_VAL_SET"] == "/mnt/ds/val-set"
    assert json.loads(env["SHARDCACHE_MOUNTS"]) == {
        "gs://bkt/train/": "/mnt/ds/train",
        "gs://bkt/val/": "/mnt/ds/val-set",
    }
    kit.validate_pod(result)


def test_wait_adds_a_restricted_init_container_first(kit):
    pod = kit.make_pod(
        {
            **DATASET,
            "shardcache.io/wait": "0.75",
            "shardcache.io/wait-timeout": "120",
            "shardcache.io/prefetch": "none",
        }
    )
    user_init = {**pod["spec"]["containers"][0], "name": "user-init", "image": "busybox"}
    pod["spec"]["initContainers"] = [user_init]
    result = patched(kit, pod)
    init = result["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["shardcache-wait", "user-init"]
    assert init[0]["command"] == [
        "shardcache",
        "wait",
        "s3://bucket-a/imagenet/",
        "--fraction",
        "0.75",
        "--timeout",
        "120",
    ]
    assert init[0]["image"] == "registry.example/shardcache:test"
    # the wait step has the dataset's status volume and nothing else: no data, no socket
    assert {"name": "SHARDCACHE_STATUS_DIR", "value": "/run/shardcache-status"} in init[0]["env"]
    assert init[0]["volumeMounts"] == [
        {"name": "status-shardcache-data", "mountPath": "/run/shardcache-status", "readOnly": True}
    ]
    assert "SHARDCACHE_MOUNTS" not in {e["name"] for e in init[0]["env"]}
    # The user's init container sees the dataset too.
    assert init[1]["volumeMounts"][0]["name"] == "shardcache-data"
    assert {"name": "SHARDCACHE_MOUNTS", "value": '{"s3://bucket-a/imagenet/":"/data"}'} in (
        init[1]["env"]
    )
    volumes = {v["name"]: v["csi"] for v in result["spec"]["volumes"]}
    assert volumes["shardcache-data"]["volumeAttributes"]["prefetch"] == "none"
    assert volumes["status-shardcache-data"] == {
        "driver": DRIVER_NAME,
        "readOnly": True,
        "volumeAttributes": {
            "dataset": "s3://bucket-a/imagenet/",
            "prefetch": "none",
            "view": "status",
        },
    }
    kit.validate_pod(result)
    assert kit.restricted_violations(result) == []


def test_wait_timeout_defaults_from_settings(kit):
    result = patched(kit, kit.make_pod({**DATASET, "shardcache.io/wait": "1"}))
    assert result["spec"]["initContainers"][0]["command"][-2:] == ["--timeout", "600"]


def test_users_own_volume_mount_and_env_are_left_alone(kit):
    pod = kit.make_pod(DATASET)
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    pod["spec"]["containers"][0]["env"] = [{"name": "SHARDCACHE_DATA_DIR", "value": "/mine"}]
    pod["spec"]["containers"].append(
        {
            "name": "other",
            "image": "busybox",
            "volumeMounts": [{"name": "scratch", "mountPath": "/data"}],
        }
    )
    result = patched(kit, pod)
    assert result["spec"]["volumes"][0] == {"name": "scratch", "emptyDir": {}}
    train, other = result["spec"]["containers"]
    assert {"name": "SHARDCACHE_DATA_DIR", "value": "/mine"} in train["env"]
    assert len([e for e in train["env"] if e["name"] == "SHARDCACHE_DATA_DIR"]) == 1
    assert other["volumeMounts"] == [{"name": "scratch", "mountPath": "/data"}]
    assert "env" not in other
    kit.validate_pod(result)


def test_a_foreign_volume_with_our_name_is_not_replaced(kit):
    pod = kit.make_pod(DATASET, volumes=[{"name": "shardcache-data", "emptyDir": {}}])
    outcome = mutate(pod, "team-a", SETTINGS, ALLOW_ALL)
    assert outcome.kind == "skip" and outcome.patch == ()
    assert "already has a volume 'shardcache-data'" in outcome.warnings[0]


@pytest.mark.parametrize("namespace", ["kube-system", "shardcache-system"])
def test_protected_namespaces_are_never_mutated(kit, namespace):
    outcome = mutate(kit.make_pod(DATASET), namespace, SETTINGS, ALLOW_ALL)
    assert outcome.kind == "skip" and outcome.patch == ()


def test_pod_without_the_label_is_untouched(kit):
    outcome = mutate(kit.make_pod(DATASET, enabled=False), "team-a", SETTINGS, ALLOW_ALL)
    assert outcome.kind == "skip"


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"shardcache.io/dataset": "file:///etc/"}, "only for the embedded mode"),
        ({"shardcache.io/dataset": "memory://bkt/x/"}, "only for the embedded mode"),
        ({"shardcache.io/dataset": "http://example/x"}, "unsupported scheme"),
        ({"shardcache.io/dataset": "s3://bkt/a/../../etc/"}, "path segment"),
        ({"shardcache.io/dataset": "s3://bkt//x/"}, "s3://bkt//x/"),
        ({"shardcache.io/dataset": "s3://bkt/x\\..\\y"}, "control character"),
        ({"shardcache.io/dataset": "not a url"}, "not a dataset URL"),
        ({**DATASET, "shardcache.io/wait": "1.5"}, "between 0 and 1"),
        ({**DATASET, "shardcache.io/wait": "nan"}, "fraction"),
        ({**DATASET, "shardcache.io/wait": "0.5", "shardcache.io/wait-timeout": "-3"}, "seconds"),
        ({**DATASET, "shardcache.io/prefetch": "some"}, "`all` or `none`"),
        ({**DATASET, "shardcache.io/view": "fuse"}, "`read-through` (the default) or `bind`"),
        ({**DATASET, "shardcache.io/mount-path": "relative"}, "absolute directory"),
        ({**DATASET, "shardcache.io/mount-path": "/data/../etc"}, "without . or .."),
        ({**DATASET, "shardcache.io/dataset.x": "s3://bkt/y/"}, "not both"),
        ({"shardcache.io/dataset.Bad_Name": "s3://bkt/y/"}, "DNS label"),
    ],
)
def test_invalid_annotations_are_denied_with_a_clear_message(kit, annotations, expected):
    outcome = mutate(kit.make_pod(annotations), "team-a", SETTINGS, ALLOW_ALL)
    assert outcome.kind == "deny"
    assert expected in outcome.message


def test_policy_denies_prefixes_the_namespace_may_not_use(kit):
    policy = parse_policy({"namespaces": {"team-a": ["s3://bucket-a/imagenet"], "*": []}})
    assert mutate(kit.make_pod(DATASET), "team-a", SETTINGS, policy).kind == "patch"
    other = kit.make_pod({"shardcache.io/dataset": "s3://bucket-a/imagenet-private/"})
    denied = mutate(other, "team-a", SETTINGS, policy)
    assert denied.kind == "deny" and "may not use s3://bucket-a/imagenet-private/" in (
        denied.message
    )
    assert mutate(kit.make_pod(DATASET), "team-b", SETTINGS, policy).kind == "deny"


def test_hostpath_mode_mounts_the_agent_dir_and_socket(kit):
    settings = Settings(mode="hostpath", image="img")
    result = patched(kit, kit.make_pod(DATASET), settings=settings)
    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    assert volumes["shardcache-data"]["hostPath"]["path"] == (
        "/var/lib/shardcache/data/s3/bucket-a/imagenet"
    )
    # a hostPath shows complete files only, like view: bind: the pod waits for all of it,
    # reading the agent's status directory for the dataset (beside the data tree)
    status_dir = Layout(Path("/var/lib/shardcache")).status_dir(parse_url(DATASET_URL))
    assert volumes["status-shardcache-data"]["hostPath"] == {
        "path": str(status_dir),
        "type": "DirectoryOrCreate",
    }
    (wait,) = result["spec"]["initContainers"]
    assert wait["command"][3:5] == ["--fraction", "1"]
    assert wait["volumeMounts"][0]["name"] == "status-shardcache-data"
    # the status socket's own directory, never the main socket's
    assert volumes["shardcache-agent-socket"]["hostPath"]["path"] == "/run/shardcache/status"
    env = {e["name"]: e["value"] for e in result["spec"]["containers"][0]["env"]}
    assert env["SHARDCACHE_AGENT_SOCKET"] == "/run/shardcache/status/agent.sock"
    assert mutate(result, "team-a", settings, ALLOW_ALL).patch == ()
    kit.validate_pod(result)
    assert any("hostPath" in v for v in kit.restricted_violations(result))


@pytest.mark.parametrize(
    "pod",
    [
        None,
        [],
        "pod",
        {"metadata": "x"},
        {"metadata": {"labels": {"shardcache.io/enabled": "true"}, "annotations": DATASET}},
        {
            "metadata": {"labels": {"shardcache.io/enabled": "true"}, "annotations": DATASET},
            "spec": {"containers": ["x"]},
        },
        {
            "metadata": {"labels": {"shardcache.io/enabled": "true"}, "annotations": DATASET},
            "spec": {
                "containers": [{"name": ["x"], "env": "x", "volumeMounts": {}}],
                "volumes": [{"name": ["v"]}, 3],
                "initContainers": [7, {"name": {}}],
            },
        },
        {
            "metadata": {
                "labels": {"shardcache.io/enabled": "true"},
                "annotations": {"shardcache.io/dataset": 5},
            }
        },
        {"metadata": {"labels": {"shardcache.io/enabled": "true"}, "annotations": ["x"]}},
    ],
)
def test_hostile_pods_never_crash_the_mutation(pod):
    outcome = mutate(pod, "team-a", SETTINGS, ALLOW_ALL)
    assert outcome.kind in ("skip", "deny", "patch")


def test_answer_encodes_the_patch_and_echoes_the_uid(kit):
    review = kit.make_review(kit.make_pod(DATASET), uid="abc")
    result = answer(review, SETTINGS, ALLOW_ALL)
    assert result.status == 200 and result.outcome == "patched"
    response = result.body["response"]
    assert response["uid"] == "abc" and response["allowed"] is True
    ops = json.loads(base64.b64decode(response["patch"]))
    assert ops[0]["path"] == "/spec/volumes"


def test_answer_uses_the_request_namespace_when_the_pod_has_none(kit):
    policy = parse_policy({"namespaces": {"team-a": ["s3://bucket-a/"]}})
    pod = kit.make_pod(DATASET)
    assert "namespace" not in pod["metadata"]
    assert answer(kit.make_review(pod, "team-a"), SETTINGS, policy).outcome == "patched"
    assert answer(kit.make_review(pod, "team-b"), SETTINGS, policy).outcome == "denied"


def test_answer_ignores_other_operations_and_resources(kit):
    pod = kit.make_pod(DATASET)
    for review in (
        kit.make_review(pod, operation="UPDATE"),
        {
            **kit.make_review(pod),
            "request": {**kit.make_review(pod)["request"], "subResource": "status"},
        },
    ):
        result = answer(review, SETTINGS, ALLOW_ALL)
        assert result.outcome == "ignored" and result.body["response"]["allowed"] is True


def test_dry_run_answers_exactly_like_a_real_run(kit):
    pod = kit.make_pod({**DATASET, "shardcache.io/wait": "0.5"})
    real = answer(kit.make_review(pod), SETTINGS, ALLOW_ALL)
    dry = answer(kit.make_review(pod, dry_run=True), SETTINGS, ALLOW_ALL)
    assert real == dry


def test_denial_is_a_well_formed_review(kit):
    pod = kit.make_pod({"shardcache.io/dataset": "file:///etc/"})
    body = answer(kit.make_review(pod, uid="u"), SETTINGS, ALLOW_ALL).body
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["code"] == 403
    assert "file://" in body["response"]["status"]["message"]


# ---- the view, the wait it implies, and the client's SHARDCACHE_MOUNTS ----------------------


def test_a_bind_view_waits_for_the_whole_dataset_unless_the_pod_says(kit):
    pod = kit.make_pod({**DATASET, "shardcache.io/view": "bind"})
    result = patched(kit, pod)
    volumes = {v["name"]: v["csi"]["volumeAttributes"] for v in result["spec"]["volumes"]}
    assert volumes["shardcache-data"]["view"] == "bind"
    assert volumes["status-shardcache-data"]["view"] == "status"
    (wait,) = result["spec"]["initContainers"]
    assert wait["command"][2:] == [DATASET_URL, "--fraction", "1", "--timeout", "600"]
    kit.validate_pod(result)
    assert kit.restricted_violations(result) == []
    assert mutate(result, "team-a", SETTINGS, ALLOW_ALL).patch == ()

    asked = patched(
        kit, kit.make_pod({**DATASET, "shardcache.io/view": "bind", "shardcache.io/wait": "0.5"})
    )
    assert asked["spec"]["initContainers"][0]["command"][3:5] == ["--fraction", "0.5"]
    never = patched(
        kit, kit.make_pod({**DATASET, "shardcache.io/view": "bind", "shardcache.io/wait": "0"})
    )
    assert "initContainers" not in never["spec"]
    assert [v["name"] for v in never["spec"]["volumes"]] == ["shardcache-data"]


def test_read_through_is_the_default_and_does_not_wait(kit):
    result = patched(kit, kit.make_pod({**DATASET, "shardcache.io/view": "read-through"}))
    assert result["spec"]["volumes"][0]["csi"]["volumeAttributes"]["view"] == "read-through"
    assert "initContainers" not in result["spec"]
    assert result["spec"] == patched(kit, kit.make_pod(DATASET))["spec"]  # as saying nothing


def test_named_datasets_each_get_a_status_volume_and_a_wait_step(kit):
    pod = kit.make_pod(
        {
            "shardcache.io/dataset.train": "s3://bkt/train/",
            "shardcache.io/dataset.status": "s3://bkt/status/",  # a NAME that says "status"
            "shardcache.io/wait": "0.9",
        }
    )
    result = patched(kit, pod)
    names = sorted(v["name"] for v in result["spec"]["volumes"])
    assert names == [
        "shardcache-status",
        "shardcache-train",
        "status-shardcache-status",
        "status-shardcache-train",
    ]
    init = {c["name"]: c for c in result["spec"]["initContainers"]}
    assert set(init) == {"shardcache-wait-status", "shardcache-wait-train"}
    assert init["shardcache-wait-train"]["volumeMounts"][0]["name"] == "status-shardcache-train"
    kit.validate_pod(result)
    assert kit.restricted_violations(result) == []
    assert mutate(result, "team-a", SETTINGS, ALLOW_ALL).patch == ()


def test_a_foreign_volume_with_the_status_name_skips_only_the_wait(kit):
    pod = kit.make_pod(
        {**DATASET, "shardcache.io/wait": "1"},
        volumes=[{"name": "status-shardcache-data", "emptyDir": {}}],
    )
    outcome = mutate(pod, "team-a", SETTINGS, ALLOW_ALL)
    assert any("does not wait for" in w for w in outcome.warnings)
    result = patched(kit, pod)
    assert "initContainers" not in result["spec"]
    assert result["spec"]["containers"][0]["volumeMounts"][0]["name"] == "shardcache-data"


def test_mounts_name_where_each_container_sees_each_dataset(kit):
    pod = kit.make_pod(
        {
            "shardcache.io/dataset.train": "s3://bkt/train/",
            "shardcache.io/dataset.val": "s3://bkt/val/",
        }
    )
    train = pod["spec"]["containers"][0]
    # the user mounts the val volume themselves elsewhere, and something else at /data/train
    train["volumeMounts"] = [{"name": "shardcache-val", "mountPath": "/elsewhere/val"}]
    own = {**train, "name": "own", "volumeMounts": [{"name": "x", "mountPath": "/data/train"}]}
    mine = {**train, "name": "mine", "env": [{"name": "SHARDCACHE_MOUNTS", "value": "{}"}]}
    pod["spec"]["containers"] += [own, mine]
    pod["spec"]["volumes"] = [{"name": "x", "emptyDir": {}}]
    result = patched(kit, pod)

    def mounts(container: dict[str, Any]) -> dict[str, str]:
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        return json.loads(env["SHARDCACHE_MOUNTS"])  # type: ignore[no-any-return]

    first, second, third = result["spec"]["containers"]
    assert mounts(first) == {"s3://bkt/train/": "/data/train", "s3://bkt/val/": "/elsewhere/val"}
    assert mounts(second) == {"s3://bkt/val/": "/data/val"}  # not train: /data/train is theirs
    assert mounts(third) == {}  # the user's own value is left alone
    kit.validate_pod(result)
