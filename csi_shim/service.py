"""The CSI Identity and Node services: gRPC in, NodeDriver calls, status codes out.

Thin on purpose: requests are unpacked into plain values, NodeDriver does the work, and one
table (`shardcache.errors.CODES`, shared with the agent and the CLI) turns shardcache errors
into the codes the CSI spec asks for (INVALID_ARGUMENT for a
bad request, PERMISSION_DENIED for a refused URL, ALREADY_EXISTS for a target published with
other arguments, UNAVAILABLE when the agent does not answer, so that kubelet retries).
Node methods that are not overridden here answer UNIMPLEMENTED from the generated base class.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import wrappers_pb2
from shardcache import errors
from shardcache.errors import redact
from shardcache_cluster.podspec import DRIVER_NAME

from .node import NodeDriver, PublishRequest
from .proto import csi_pb2, csi_pb2_grpc

log = logging.getLogger(__name__)

R = TypeVar("R")


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC code for an error raised while serving a request, from the one kind table
    (`shardcache.errors.CODES`); INTERNAL for anything that is not a shardcache error."""
    if not isinstance(exc, errors.CacheError):
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode[errors.codes_of(exc.kind).grpc]


def _answering(method: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except errors.CacheError as e:
            code = status_code_for(e)
            log.warning("%s failed with %s: %s", method.__name__, code.name, redact(str(e)))
            context.abort(code, redact(str(e)))
        except Exception as e:  # a bug: say so, and keep serving
            log.exception("%s failed unexpectedly", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{e.__class__.__name__}: {redact(str(e))}")
        raise AssertionError("unreachable: abort() raises")  # pragma: no cover

    return wrapper


class IdentityService(csi_pb2_grpc.IdentityServicer):
    def __init__(self, driver: NodeDriver, version: str) -> None:
        self.driver = driver
        self.version = version

    @_answering
    def GetPluginInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return csi_pb2.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=self.version)

    @_answering
    def GetPluginCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        # No CONTROLLER_SERVICE: volumes are inline (ephemeral), nothing to provision.
        return csi_pb2.GetPluginCapabilitiesResponse()

    @_answering
    def Probe(self, request: Any, context: grpc.ServicerContext) -> Any:
        # The plugin's own health only: an agent outage must not get the plugin restarted
        # (publishing answers UNAVAILABLE meanwhile, and kubelet retries).
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=self.driver.healthy()))


class NodeService(csi_pb2_grpc.NodeServicer):
    def __init__(self, driver: NodeDriver, node_id: str) -> None:
        self.driver = driver
        self.node_id = node_id

    @_answering
    def NodePublishVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        capability = ""
        if request.HasField("volume_capability"):
            capability = request.volume_capability.WhichOneof("access_type") or ""
        self.driver.publish(
            PublishRequest(
                volume_id=request.volume_id,
                target_path=request.target_path,
                volume_context=dict(request.volume_context),
                capability=capability,
                readonly=request.readonly,
            )
        )
        return csi_pb2.NodePublishVolumeResponse()

    @_answering
    def NodeUnpublishVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.driver.unpublish(request.volume_id, request.target_path)
        return csi_pb2.NodeUnpublishVolumeResponse()

    @_answering
    def NodeGetCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        # No STAGE_UNSTAGE_VOLUME: there is no device to stage, only a directory to bind.
        return csi_pb2.NodeGetCapabilitiesResponse()

    @_answering
    def NodeGetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return csi_pb2.NodeGetInfoResponse(node_id=self.node_id)
