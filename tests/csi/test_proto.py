"""The generated descriptors carry the CSI v1 names and field numbers kubelet relies on.

Every number below was checked against the CSI specification's csi.proto (package csi.v1);
a wrong number would not fail any other test here, because both ends of our tests use the
same generated code — only kubelet would notice.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from shardcache_csi.proto import csi_pb2

# (message, field) -> (number, type, label repeated?)
FIELDS = {
    ("GetPluginInfoResponse", "name"): (1, F.TYPE_STRING),
    ("GetPluginInfoResponse", "vendor_version"): (2, F.TYPE_STRING),
    ("GetPluginInfoResponse", "manifest"): (3, F.TYPE_MESSAGE),
    ("GetPluginCapabilitiesResponse", "capabilities"): (1, F.TYPE_MESSAGE),
    ("PluginCapability", "service"): (1, F.TYPE_MESSAGE),
    ("ProbeResponse", "ready"): (1, F.TYPE_MESSAGE),
    ("VolumeCapability", "block"): (1, F.TYPE_MESSAGE),
    ("VolumeCapability", "mount"): (2, F.TYPE_MESSAGE),
    ("VolumeCapability", "access_mode"): (3, F.TYPE_MESSAGE),
    ("VolumeCapability.MountVolume", "fs_type"): (1, F.TYPE_STRING),
    ("VolumeCapability.MountVolume", "mount_flags"): (2, F.TYPE_STRING),
    ("VolumeCapability.AccessMode", "mode"): (1, F.TYPE_ENUM),
    ("NodePublishVolumeRequest", "volume_id"): (1, F.TYPE_STRING),
    ("NodePublishVolumeRequest", "publish_context"): (2, F.TYPE_MESSAGE),
    ("NodePublishVolumeRequest", "staging_target_path"): (3, F.TYPE_STRING),
    ("NodePublishVolumeRequest", "target_path"): (4, F.TYPE_STRING),
    ("NodePublishVolumeRequest", "volume_capability"): (5, F.TYPE_MESSAGE),
    ("NodePublishVolumeRequest", "readonly"): (6, F.TYPE_BOOL),
    ("NodePublishVolumeRequest", "secrets"): (7, F.TYPE_MESSAGE),
    ("NodePublishVolumeRequest", "volume_context"): (8, F.TYPE_MESSAGE),
    ("NodeUnpublishVolumeRequest", "volume_id"): (1, F.TYPE_STRING),
    ("NodeUnpublishVolumeRequest", "target_path"): (2, F.TYPE_STRING),
    ("NodeStageVolumeRequest", "volume_id"): (1, F.TYPE_STRING),
    ("NodeStageVolumeRequest", "staging_target_path"): (3, F.TYPE_STRING),
    ("NodeUnstageVolumeRequest", "volume_id"): (1, F.TYPE_STRING),
    ("NodeUnstageVolumeRequest", "staging_target_path"): (2, F.TYPE_STRING),
    ("NodeGetVolumeStatsRequest", "volume_id"): (1, F.TYPE_STRING),
    ("NodeGetVolumeStatsRequest", "volume_path"): (2, F.TYPE_STRING),
    ("NodeExpandVolumeRequest", "volume_id"): (1, F.TYPE_STRING),
    ("NodeExpandVolumeRequest", "volume_path"): (2, F.TYPE_STRING),
    ("NodeGetCapabilitiesResponse", "capabilities"): (1, F.TYPE_MESSAGE),
    ("NodeServiceCapability", "rpc"): (1, F.TYPE_MESSAGE),
    ("NodeServiceCapability.RPC", "type"): (1, F.TYPE_ENUM),
    ("NodeGetInfoResponse", "node_id"): (1, F.TYPE_STRING),
    ("NodeGetInfoResponse", "max_volumes_per_node"): (2, F.TYPE_INT64),
}

MAPS = {
    ("GetPluginInfoResponse", "manifest"),
    ("NodePublishVolumeRequest", "publish_context"),
    ("NodePublishVolumeRequest", "secrets"),
    ("NodePublishVolumeRequest", "volume_context"),
}


def _message(dotted: str):  # type: ignore[no-untyped-def]
    desc = csi_pb2.DESCRIPTOR.message_types_by_name[dotted.split(".")[0]]
    for part in dotted.split(".")[1:]:
        desc = desc.nested_types_by_name[part]
    return desc


def test_package_and_services() -> None:
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    services = csi_pb2.DESCRIPTOR.services_by_name
    assert services["Identity"].full_name == "csi.v1.Identity"
    assert services["Node"].full_name == "csi.v1.Node"
    assert set(services["Identity"].methods_by_name) == {
        "GetPluginInfo",
        "GetPluginCapabilities",
        "Probe",
    }
    node = services["Node"].methods_by_name
    assert node["NodePublishVolume"].input_type.full_name == "csi.v1.NodePublishVolumeRequest"
    assert node["NodeGetInfo"].output_type.full_name == "csi.v1.NodeGetInfoResponse"
    assert (
        services["Identity"]
        .methods_by_name["Probe"]
        .output_type.fields_by_name["ready"]
        .message_type.full_name
        == "google.protobuf.BoolValue"
    )


@pytest.mark.parametrize(("message", "field"), sorted(FIELDS))
def test_field_number_and_type(message: str, field: str) -> None:
    desc = _message(message)
    assert desc.full_name == f"csi.v1.{message}"
    f = desc.fields_by_name[field]
    assert (f.number, f.type) == FIELDS[(message, field)]
    if (message, field) in MAPS:
        entry = f.message_type
        assert entry.GetOptions().map_entry
        assert entry.fields_by_name["key"].type == F.TYPE_STRING
        assert entry.fields_by_name["value"].type == F.TYPE_STRING


def test_repeated_fields() -> None:
    for message, field in [
        ("GetPluginCapabilitiesResponse", "capabilities"),
        ("NodeGetCapabilitiesResponse", "capabilities"),
        ("VolumeCapability.MountVolume", "mount_flags"),
    ]:
        assert _message(message).fields_by_name[field].is_repeated


def test_enum_values() -> None:
    modes = _message("VolumeCapability.AccessMode").enum_types_by_name["Mode"]
    assert {v.name: v.number for v in modes.values} == {
        "UNKNOWN": 0,
        "SINGLE_NODE_WRITER": 1,
        "SINGLE_NODE_READER_ONLY": 2,
        "MULTI_NODE_READER_ONLY": 3,
        "MULTI_NODE_SINGLE_WRITER": 4,
        "MULTI_NODE_MULTI_WRITER": 5,
    }
    rpc = _message("NodeServiceCapability.RPC").enum_types_by_name["Type"]
    assert {v.name: v.number for v in rpc.values} == {
        "UNKNOWN": 0,
        "STAGE_UNSTAGE_VOLUME": 1,
        "GET_VOLUME_STATS": 2,
    }
    svc = _message("PluginCapability.Service").enum_types_by_name["Type"]
    assert {v.name: v.number for v in svc.values} == {
        "UNKNOWN": 0,
        "CONTROLLER_SERVICE": 1,
        "VOLUME_ACCESSIBILITY_CONSTRAINTS": 2,
    }


def test_oneofs() -> None:
    assert [f.name for f in _message("VolumeCapability").oneofs_by_name["access_type"].fields] == [
        "block",
        "mount",
    ]
    assert [f.name for f in _message("PluginCapability").oneofs_by_name["type"].fields] == [
        "service"
    ]


def test_wire_bytes_match_the_spec_numbers() -> None:
    """Field 4 (target_path) and 6 (readonly) on the wire, as kubelet's Go client writes them."""
    data = csi_pb2.NodePublishVolumeRequest(target_path="/t", readonly=True).SerializeToString()
    assert data == b"\x22\x02/t" + b"\x30\x01"
