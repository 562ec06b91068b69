"""The tenancy policy: pure decisions, and reading the operator's file (JSON or YAML)."""

from __future__ import annotations

import pytest
from shardcache.errors import ConfigError
from shardcache_cluster.policy import ALLOW_ALL, load_policy, parse_policy

POLICY = parse_policy(
    {
        "namespaces": {
            "team-a": ["s3://bucket-a/", "gs://shared/public/img"],
            "*": ["az://open/"],
        }
    }
)


@pytest.mark.parametrize(
    ("namespace", "url", "allowed"),
    [
        ("team-a", "s3://bucket-a/anything/", True),
        ("team-a", "s3://bucket-a", True),
        ("team-a", "gs://shared/public/img/train/", True),
        ("team-a", "gcs://shared/public/img", True),
        ("team-a", "gs://shared/public/images/", False),  # directory boundary
        ("team-a", "gs://shared/public/", False),  # wider than the grant
        ("team-a", "s3://bucket-b/x/", False),
        ("team-a", "az://open/x/", False),  # its own entry wins over "*"
        ("team-z", "abfs://open/x/", True),
        ("team-z", "s3://bucket-a/x/", False),
        ("team-a", "file:///etc/", False),
        ("team-a", "s3://bucket-a/x/../../other/", False),
        ("team-a", "s3://bucket-a/./x/", False),
    ],
)
def test_prefix_matching(namespace, url, allowed):
    assert POLICY.check(namespace, url).allowed is allowed


def test_no_policy_allows_every_cloud_url_but_never_local_ones():
    assert ALLOW_ALL.check("any", "s3://bkt/x/").allowed
    assert not ALLOW_ALL.check("any", "memory://bkt/x/").allowed
    assert not ALLOW_ALL.check("any", 5).allowed  # type: ignore[arg-type]


def test_a_namespace_without_entry_and_no_wildcard_gets_nothing():
    policy = parse_policy({"namespaces": {"team-a": ["s3://bkt/"]}})
    decision = policy.check("team-b", "s3://bkt/x/")
    assert not decision.allowed and "allows no dataset" in decision.reason


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"namespaces": []},
        {"namespaces": {"a": "s3://bkt/"}},
        {"namespaces": {"a": ["file:///x/"]}},
        {"namespaces": {}, "extra": 1},
    ],
)
def test_malformed_policies_are_refused(doc):
    with pytest.raises(ConfigError):
        parse_policy(doc)


def test_load_policy_reads_json_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text('{"namespaces": {"a": ["s3://bkt/x/"]}}')
    (tmp_path / "p.yaml").write_text("namespaces:\n  a:\n    - s3://bkt/x/\n  '*': []\n")
    assert load_policy(tmp_path / "p.json").check("a", "s3://bkt/x/y/").allowed
    from_yaml = load_policy(tmp_path / "p.yaml")
    assert from_yaml.check("a", "s3://bkt/x/").allowed
    assert not from_yaml.check("b", "s3://bkt/x/").allowed
    assert load_policy(None) is ALLOW_ALL


def test_a_named_but_missing_or_broken_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")
    (tmp_path / "bad").write_text("namespaces: [unclosed")
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "bad")


def _kubelet_swap(directory, text):
    """Write a ConfigMap update as kubelet does: a new timestamped dir, `..data` swapped."""
    import os
    import uuid

    new = directory / f"..2026_11_30_{uuid.uuid4().hex}"
    new.mkdir()
    (new / "policy.yaml").write_text(text)
    tmp = directory / "..data_tmp"
    tmp.symlink_to(new.name)
    os.replace(tmp, directory / "..data")
    link = directory / "policy.yaml"
    if not link.is_symlink():
        link.symlink_to("..data/policy.yaml")


def test_reloading_policy_follows_a_kubelet_configmap_update(tmp_path):
    from shardcache_cluster.policy import PolicySource, ReloadingPolicy

    now = [0.0]
    _kubelet_swap(tmp_path, "namespaces:\n  a: ['s3://bkt/x/']\n")
    policy = ReloadingPolicy(PolicySource(tmp_path / "policy.yaml", cluster=True), lambda: now[0])
    assert policy.generation == 1 and policy.check("a", "s3://bkt/x/").allowed
    _kubelet_swap(tmp_path, "namespaces:\n  a: ['s3://bkt/y/']\n")
    assert policy.check("a", "s3://bkt/x/").allowed  # not looked at again within the interval
    now[0] += 1.0
    assert not policy.check("a", "s3://bkt/x/").allowed  # the revocation is in force
    assert policy.check("a", "s3://bkt/y/").allowed and policy.generation == 2
    now[0] += 1.0
    assert policy.maybe_reload() is None and policy.generation == 2  # unchanged: no reload
    _kubelet_swap(tmp_path, "namespaces: [broken")
    now[0] += 1.0
    assert not policy.check("a", "s3://bkt/y/").allowed  # unusable: nothing is allowed
    assert policy.generation == 3 and "neither valid JSON nor valid YAML" in policy.last_error
    (tmp_path / "policy.yaml").unlink()
    assert policy.maybe_reload(force=True) == "error" and policy.in_force.rules == {}


def test_without_a_file_cluster_mode_allows_nothing_and_one_machine_everything():
    from shardcache_cluster.policy import PolicySource, ReloadingPolicy, in_cluster

    cluster = ReloadingPolicy(PolicySource(None, cluster=True))
    assert not cluster.check("a", "s3://bkt/x/").allowed
    assert ReloadingPolicy(PolicySource(None, cluster=False)).check("a", "s3://bkt/x/").allowed
    assert in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) and not in_cluster({})
