"""The volumes of a container as the kubelet makes them: where each mount's content comes
from (a node path, files the kubelet writes, a CSI publish target), how it is bound, and the
service-account token volume the ServiceAccount admission plugin adds unless automounting is
turned off. Pure: `runtime.py` writes the files and makes the mounts."""

from __future__ import annotations

from collections.abc import Sequence

from .kubeobj import TOKEN_DIR, Mount, Obj, PodFacts, SpecError, field_ref, object_data


def automount_token(pod: Obj, objects: Sequence[Obj], namespace: str) -> bool:
    """The pod's field wins over its ServiceAccount's; both absent: the token is mounted."""
    if "automountServiceAccountToken" in pod["spec"]:
        return bool(pod["spec"]["automountServiceAccountToken"])
    name = pod["spec"].get("serviceAccountName", "default")
    for o in objects:
        if (
            o["kind"] == "ServiceAccount"
            and o["metadata"]["name"] == name
            and (o["metadata"].get("namespace") == namespace)
        ):
            return bool(o.get("automountServiceAccountToken", True))
    return True


def token_for(service_account: str, facts: PodFacts, audience: str = "") -> bytes:
    """A stand-in for a token the API server would issue: nothing here can verify one."""
    return f"harness-token:{facts.namespace}:{service_account}:{audience or 'api'}".encode()


def _projected_files(
    sources: Sequence[Obj], pod: Obj, facts: PodFacts, objects: Sequence[Obj]
) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    account = pod["spec"].get("serviceAccountName", "default")
    for source in sources:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files.append((token["path"], token_for(account, facts, token.get("audience", ""))))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"]["items"]:
                value = field_ref(item["fieldRef"]["fieldPath"], pod, facts)
                files.append((item["path"], value.encode()))
        else:
            kind = "Secret" if "secret" in source else "ConfigMap"
            files += _keyed_files(
                source["secret" if kind == "Secret" else "configMap"], kind, facts, objects
            )
    return files


def _keyed_files(
    ref: Obj, kind: str, facts: PodFacts, objects: Sequence[Obj]
) -> list[tuple[str, bytes]]:
    name = ref.get("name") or ref.get("secretName")
    data = object_data(objects, kind, facts.namespace, name)
    if ref.get("items"):
        return [(item["path"], data[item["key"]]) for item in ref["items"]]
    return sorted(data.items())


def volume_mount(
    volume: Obj, mount: Obj, pod: Obj, facts: PodFacts, objects: Sequence[Obj], pods_dir: str
) -> Mount:
    """One volumeMount of a container: where its content comes from and how it is bound."""
    target = mount["mountPath"]
    read_only = bool(mount.get("readOnly"))
    propagation = mount.get("mountPropagation", "None")
    name = volume["name"]
    if "hostPath" in volume:
        host = volume["hostPath"]
        return Mount(
            target, "host", host["path"], read_only, propagation, host_type=host.get("type", "")
        )
    if "emptyDir" in volume:
        source = f"{pods_dir}/{facts.uid}/volumes/kubernetes.io~empty-dir/{name}"
        # medium Memory: the kubelet mounts a tmpfs there; else a directory of the node's disk
        memory = (volume["emptyDir"] or {}).get("medium") == "Memory"
        kind = "EmptyDirMemory" if memory else "EmptyDir"
        return Mount(target, "host", source, read_only, propagation, host_type=kind)
    if "csi" in volume:
        source = f"{pods_dir}/{facts.uid}/volumes/kubernetes.io~csi/{name}/mount"
        return Mount(target, "csi", source, read_only, propagation)
    if "projected" in volume:
        files = _projected_files(volume["projected"]["sources"], pod, facts, objects)
        mode = volume["projected"].get("defaultMode", 0o644)
    elif "secret" in volume:
        files = _keyed_files(volume["secret"], "Secret", facts, objects)
        mode = volume["secret"].get("defaultMode", 0o644)
    elif "configMap" in volume:
        files = _keyed_files(volume["configMap"], "ConfigMap", facts, objects)
        mode = volume["configMap"].get("defaultMode", 0o644)
    else:
        raise SpecError(f"volume {name}: type {sorted(volume)} is not implemented")
    kind_dir = next(k for k in ("projected", "secret", "configMap") if k in volume)
    source = f"{pods_dir}/{facts.uid}/volumes/kubernetes.io~{kind_dir.lower()}/{name}"
    # the kubelet mounts these read-only whatever the volumeMount says (since 1.9.4)
    return Mount(
        target,
        "files",
        source,
        True,
        propagation,
        files=tuple((path, data, mode) for path, data in files),
    )


def token_volume(pod: Obj, facts: PodFacts, objects: Sequence[Obj]) -> Obj:
    """The projected volume the ServiceAccount admission plugin adds when the token is
    automounted: a bound token, the cluster's CA and the namespace."""
    return {
        "name": "kube-api-access-harness",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def mounts_of(
    container: Obj, pod: Obj, facts: PodFacts, objects: Sequence[Obj], pods_dir: str
) -> tuple[Mount, ...]:
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = []
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            raise SpecError(f"container {container['name']}: no volume {m['name']!r}")
        mounts.append(volume_mount(volumes[m["name"]], m, pod, facts, objects, pods_dir))
    taken = {m.target.rstrip("/") for m in mounts}
    if automount_token(pod, objects, facts.namespace) and TOKEN_DIR not in taken:
        mount = {"name": "kube-api-access-harness", "mountPath": TOKEN_DIR, "readOnly": True}
        mounts.append(
            volume_mount(token_volume(pod, facts, objects), mount, pod, facts, objects, pods_dir)
        )
    return tuple(mounts)
