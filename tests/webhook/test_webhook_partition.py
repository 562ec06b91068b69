"""`shardcache.io/partition`: the pod's share, resolved by the webhook into the CSI volume.

Pure tests of the mutation (plain values), and one review over real TLS for the denial.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
from shardcache_cluster.policy import ALLOW_ALL
from shardcache_cluster.webhook.mutate import Settings, mutate

SETTINGS = Settings(image="registry.example/shardcache:test")
DATASET = {"shardcache.io/dataset": "s3://bucket-a/imagenet/"}
INDEX = "batch.kubernetes.io/job-completion-index"


def apply(pod: dict[str, Any], settings: Settings = SETTINGS) -> dict[str, Any]:
    outcome = mutate(pod, "team-a", settings, ALLOW_ALL)
    assert outcome.kind == "patch", outcome
    return jsonpatch.apply_patch(pod, list(outcome.patch))  # type: ignore[no-any-return]


def attributes(pod: dict[str, Any]) -> list[dict[str, str]]:
    return [v["csi"]["volumeAttributes"] for v in pod["spec"]["volumes"]]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_an_explicit_share_becomes_the_csi_attribute_and_the_env(kit):
    pod = apply(kit.make_pod({**DATASET, "shardcache.io/partition": "3/8"}))
    assert attributes(pod) == [
        {
            "dataset": "s3://bucket-a/imagenet/",
            "prefetch": "all",
            "view": "read-through",
            "partition": "3/8",
        }
    ]
    assert env_of(pod["spec"]["containers"][0])["SHARDCACHE_PARTITION"] == "3/8"
    kit.validate_pod(pod)
    assert kit.restricted_violations(pod) == []


def test_index_takes_the_indexed_job_completion_index(kit):
    pod = kit.make_pod({**DATASET, "shardcache.io/partition": "index/16", INDEX: "5"})
    assert attributes(apply(pod))[0]["partition"] == "5/16"


def test_the_completion_index_label_serves_when_the_annotation_is_absent(kit):
    pod = kit.make_pod({**DATASET, "shardcache.io/partition": "index/4"})
    pod["metadata"]["labels"][INDEX] = "0"
    assert attributes(apply(pod))[0]["partition"] == "0/4"


def test_every_named_dataset_gets_the_same_share(kit):
    pod = apply(
        kit.make_pod(
            {
                "shardcache.io/dataset.train": "s3://bkt/train/",
                "shardcache.io/dataset.val": "gs://bkt/val/",
                "shardcache.io/partition": "1/2",
            }
        )
    )
    assert [a["partition"] for a in attributes(pod)] == ["1/2", "1/2"]


def test_without_the_annotation_nothing_changes(kit):
    pod = apply(kit.make_pod(DATASET))
    assert "partition" not in attributes(pod)[0]
    assert "SHARDCACHE_PARTITION" not in env_of(pod["spec"]["containers"][0])


def test_the_share_is_idempotent_on_reinvocation(kit):
    once = apply(kit.make_pod({**DATASET, "shardcache.io/partition": "index/4", INDEX: "2"}))
    again = mutate(once, "team-a", SETTINGS, ALLOW_ALL)
    assert again.kind == "skip" and again.patch == ()


@pytest.mark.parametrize(
    ("value", "extra", "says"),
    [
        ("4/4", {}, "I must be between 0 and N-1 = 3"),
        ("9/4", {}, "I must be between 0 and N-1 = 3"),
        ("0/0", {}, "N must be between 1"),
        ("-1/4", {}, "whole numbers"),
        ("1/-4", {}, "whole numbers"),
        ("one/4", {}, "whole numbers"),
        ("1/four", {}, "whole numbers"),
        ("0.5/4", {}, "whole numbers"),
        ("1", {}, "whole numbers"),
        ("", {}, "whole numbers"),
        ("index/4", {}, "not part of an Indexed Job"),
        ("index/4", {INDEX: "4"}, "I must be between 0 and N-1 = 3"),
        ("index/4", {INDEX: "x"}, "whole numbers"),
        ("index/0", {INDEX: "0"}, "N must be between 1"),
        ("index/N", {INDEX: "0"}, "whole numbers"),
    ],
)
def test_bad_shares_are_denied_with_a_message_naming_the_annotation(kit, value, extra, says):
    pod = kit.make_pod({**DATASET, "shardcache.io/partition": value, **extra})
    outcome = mutate(pod, "team-a", SETTINGS, ALLOW_ALL)
    assert outcome.kind == "deny"
    assert "shardcache.io/partition" in outcome.message
    assert says in outcome.message


def test_a_denial_over_tls_is_a_well_formed_review(client, kit):
    pod = kit.make_pod({**DATASET, "shardcache.io/partition": "index/8"})
    status, review = client.review(kit.make_review(pod, uid="u-part"))
    response = review["response"]
    assert status == 200 and response["uid"] == "u-part" and response["allowed"] is False
    assert "shardcache.io/partition" in response["status"]["message"]
    assert "Indexed Job" in response["status"]["message"]


def test_the_wait_init_container_waits_for_the_share(kit):
    pod = apply(
        kit.make_pod(
            {
                **DATASET,
                "shardcache.io/partition": "index/16",
                INDEX: "5",
                "shardcache.io/wait": "1",
            }
        )
    )
    [wait] = pod["spec"]["initContainers"]
    assert wait["command"][-2:] == ["--partition", "5/16"]
    # the status volume registers the pod too: with the same share, never the whole dataset
    assert [a["partition"] for a in attributes(pod)] == ["5/16", "5/16"]
    kit.validate_pod(pod)
    assert kit.restricted_violations(pod) == []
