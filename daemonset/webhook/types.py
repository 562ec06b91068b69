"""Typed shapes of the AdmissionReview v1 payloads and JSON patch operations.

Only the fields the webhook reads or writes are declared; everything arrives as untrusted JSON,
so the code that reads these still checks each value's type before using it.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Json = Any


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class AdmissionRequest(TypedDict):
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: NotRequired[str]
    namespace: NotRequired[str]
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    object: NotRequired[dict[str, Json]]
    dryRun: NotRequired[bool]


class AdmissionStatus(TypedDict):
    code: int
    message: str
    reason: NotRequired[str]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[AdmissionStatus]
    warnings: NotRequired[list[str]]


class AdmissionReview(TypedDict):
    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: NotRequired[AdmissionRequest]
    response: NotRequired[AdmissionResponse]


class PatchOp(TypedDict):
    op: Literal["add", "replace", "remove", "test"]
    path: str
    value: NotRequired[Json]
