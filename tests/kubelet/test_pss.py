"""The Pod Security Standards reading of pss.py, control by control."""

from __future__ import annotations

import pytest

from .pss import violations

GOOD = {
    "name": "c",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def spec(**changes):
    container = {**GOOD, "securityContext": dict(GOOD["securityContext"])}
    container["securityContext"].update(changes.pop("sc", {}))
    return {"containers": [container], **changes}


def test_a_restricted_pod_passes_every_level():
    for level in ("privileged", "baseline", "restricted"):
        assert violations(spec(volumes=[{"name": "d", "csi": {"driver": "x"}}]), level) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"hostNetwork": True}, "hostNetwork"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, "hostPath"),
        ({"sc": {"privileged": True}}, "privileged"),
        ({"sc": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}, "SYS_ADMIN"),
        ({"sc": {"seccompProfile": {"type": "Unconfined"}}}, "Unconfined"),
    ],
)
def test_baseline_refuses(change, words):
    found = violations(spec(**change), "baseline")
    assert found and words in " ".join(found)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"sc": {"allowPrivilegeEscalation": True}}, "escalate"),
        ({"sc": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"sc": {"runAsUser": 0}}, "uid 0"),
        ({"sc": {"seccompProfile": None}}, "seccomp"),
        ({"sc": {"capabilities": {"drop": ["NET_RAW"]}}}, "drop ALL"),
        ({"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}, "type"),
    ],
)
def test_restricted_refuses_what_baseline_admits(change, words):
    assert violations(spec(**change), "baseline") == []
    found = violations(spec(**change), "restricted")
    assert found and words in " ".join(found)


def test_pod_level_settings_count_for_every_container():
    pod = spec(securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "Localhost"}})
    for key in ("runAsNonRoot", "seccompProfile"):
        del pod["containers"][0]["securityContext"][key]
    assert violations(pod, "restricted") == []
