"""From a decoded AdmissionReview to its answer: shape checks, routing, encoding the patch.

Pure, like the mutation it calls: the HTTP status, the answer body and an outcome label for
the metrics come back as one value. A body that is not an AdmissionReview v1 with a request
uid gets a 400 (the API server never sends one; something else is talking to us). A review
we cannot act on is answered `allowed` — the webhook fails open, as its configuration does.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final

from ..policy import Policy
from .mutate import Outcome, Settings, mutate
from .types import AdmissionResponse, AdmissionReview

API_VERSION: Final = "admission.k8s.io/v1"
#: the API server shows at most a few warnings, each best under 256 characters
MAX_WARNINGS = 8
MAX_WARNING_CHARS = 256
MAX_UID_CHARS = 128


@dataclass(frozen=True)
class ReviewResult:
    """What to send back, and how to count it."""

    status: int
    body: AdmissionReview | dict[str, str]
    #: metric label: patched | unchanged | denied | ignored | invalid | error
    outcome: str


def invalid(message: str, status: int = 400) -> ReviewResult:
    return ReviewResult(status, {"error": message}, "invalid")


def answer(doc: Any, settings: Settings, policy: Policy) -> ReviewResult:
    """Answer one decoded review body."""
    if not isinstance(doc, dict):
        return invalid("expected a JSON object (an AdmissionReview)")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "AdmissionReview":
        return invalid(f"expected apiVersion {API_VERSION} and kind AdmissionReview")
    request = doc.get("request")
    if not isinstance(request, dict):
        return invalid("the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID_CHARS:
        return invalid("request.uid must be a non-empty string")
    if not _is_pod_create(request):
        return ReviewResult(200, _review(uid, True), "ignored")
    try:
        outcome = mutate(request.get("object"), _namespace(request), settings, policy)
    except Exception as e:  # a bug must not block pods: admit unchanged, say so, count it
        warning = f"shardcache webhook failed ({type(e).__name__}); pod admitted unchanged"
        return ReviewResult(200, _review(uid, True, warnings=[warning]), "error")
    return ReviewResult(200, _from_outcome(uid, outcome), _label(outcome))


def _is_pod_create(request: dict[str, Any]) -> bool:
    resource = request.get("resource")
    return (
        request.get("operation") == "CREATE"
        and isinstance(resource, dict)
        and resource.get("group") == ""
        and resource.get("resource") == "pods"
        and not request.get("subResource")
        and isinstance(request.get("object"), dict)
    )


def _namespace(request: dict[str, Any]) -> str:
    """The request's namespace: a pod's own metadata.namespace is often empty on CREATE."""
    namespace = request.get("namespace")
    if isinstance(namespace, str) and namespace:
        return namespace
    metadata = request["object"].get("metadata")
    found = metadata.get("namespace") if isinstance(metadata, dict) else None
    return found if isinstance(found, str) else ""


def _from_outcome(uid: str, outcome: Outcome) -> AdmissionReview:
    if outcome.kind == "deny":
        return _review(uid, False, message=outcome.message)
    return _review(uid, True, patch=list(outcome.patch), warnings=list(outcome.warnings))


def _label(outcome: Outcome) -> str:
    if outcome.kind == "deny":
        return "denied"
    return "patched" if outcome.patch else "unchanged"


def _review(
    uid: str,
    allowed: bool,
    patch: list[Any] | None = None,
    warnings: list[str] | None = None,
    message: str = "",
) -> AdmissionReview:
    response: AdmissionResponse = {"uid": uid, "allowed": allowed}
    if patch:
        encoded = json.dumps(patch, separators=(",", ":")).encode()
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(encoded).decode("ascii")
    if warnings:
        response["warnings"] = [_clean(w) for w in warnings[:MAX_WARNINGS]]
    if not allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": _clean(message, 1024)}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _clean(text: str, limit: int = MAX_WARNING_CHARS) -> str:
    """One printable line, bounded: warnings end up in every kubectl user's terminal."""
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
