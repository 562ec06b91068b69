"""The API server's side of admission: send a pod to the running webhook, apply its patch.

The request goes where the MutatingWebhookConfiguration says (the Service's path), over TLS
verified against the configuration's `caBundle` with the Service's DNS name, as the API
server does; the harness dials the webhook pod's IP (no Service proxy here).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import tempfile
import uuid
from typing import Any

import jsonpatch

TIMEOUT_S = 10.0


def review(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:job-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


class _Dial(http.client.HTTPSConnection):
    """HTTPS to `name` (SNI and certificate check) at the address `ip`: a resolver's job."""

    def __init__(self, name: str, ip: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(name, port, timeout=TIMEOUT_S, context=context)
        self.ip, self.tls = ip, context

    def connect(self) -> None:
        raw = socket.create_connection((self.ip, self.port), timeout=TIMEOUT_S)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def mutate(config: dict[str, Any], pod_ip: str, port: int, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server stores it after this webhook's patch."""
    (hook,) = config["webhooks"]
    client = hook["clientConfig"]
    service = client["service"]
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
        ca.write(base64.b64decode(client["caBundle"]))
        ca.flush()
        context = ssl.create_default_context(cafile=ca.name)
    # the API server dials <service>.<namespace>.svc and checks that name in the certificate
    conn = _Dial(f"{service['name']}.{service['namespace']}.svc", pod_ip, port, context)
    try:
        conn.request(
            "POST",
            service["path"],
            body=json.dumps(review(pod)),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    response = answer["response"]
    if not response["allowed"]:
        raise PermissionError(f"webhook denied the pod: {response.get('status')}")
    if "patch" not in response:
        return pod
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(pod, ops)
