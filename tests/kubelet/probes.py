"""Run a container's probes as the kubelet does, from the node's side of the pod network.

httpGet goes to the pod IP (or the probe's `host`) and the resolved port, HTTPS without
verifying the certificate (the kubelet does not), success for a status in [200, 400);
tcpSocket is a TCP connect; grpc is the standard health service's Check (grpc.health.v1),
SERVING being success; exec runs the command inside the container's mount and network
namespaces with its user, success for exit status 0. Every attempt has the probe's own
timeout.

The harness does not wait the manifest's periods and initial delays (they would make CI slow
and prove nothing): it retries at a short interval until the probe succeeds, the container
exits, or the kubelet's own budget for it (what the probe's settings allow before the pod
is marked failed or restarted) has passed.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass

from .kubeobj import Probe
from .runtime import Container

#: the harness's pause between two attempts of a probe
RETRY_S = 0.2
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str


def budget_s(probe: Probe) -> float:
    """How long the kubelet lets this probe fail before it acts (restart, or never Ready)."""
    return probe.initial_delay_s + probe.period_s * probe.failure_threshold


def health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service}: field 1, length-delimited."""
    raw = service.encode()
    return b"\x0a" + bytes([len(raw)]) + raw if raw else b""


def serving(response: bytes) -> bool:
    """HealthCheckResponse.status == SERVING (field 1, varint 1)."""
    return response == b"\x08\x01"


def run_once(probe: Probe, pod_ip: str, container: Container) -> Outcome:
    host = probe.host or pod_ip
    try:
        if probe.kind == "httpGet":
            return _http(probe, host)
        if probe.kind == "tcpSocket":
            socket.create_connection((host, probe.port), timeout=probe.timeout_s).close()
            return Outcome(True, "connected")
        if probe.kind == "grpc":
            return _grpc(probe, host)
        return _exec(probe, container)
    except (OSError, http.client.HTTPException) as e:
        return Outcome(False, f"{type(e).__name__}: {e}")


def _http(probe: Probe, host: str) -> Outcome:
    if probe.scheme == "HTTPS":
        context = ssl._create_unverified_context()  # the kubelet skips verification too
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, probe.port, timeout=probe.timeout_s, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, probe.port, timeout=probe.timeout_s)
    try:
        conn.request(
            "GET", probe.path, headers=dict(probe.headers) | {"User-Agent": "kube-probe/1.33"}
        )
        status = conn.getresponse().status
    finally:
        conn.close()
    return Outcome(200 <= status < 400, f"HTTP {status}")


def _grpc(probe: Probe, host: str) -> Outcome:
    import grpc

    with grpc.insecure_channel(f"{host}:{probe.port}") as channel:
        call = channel.unary_unary(HEALTH_CHECK)
        try:
            answer = call(health_request(probe.service), timeout=probe.timeout_s)
        except grpc.RpcError as e:
            return Outcome(False, f"gRPC {e.code()}")
    return Outcome(serving(answer), f"health status bytes {answer!r}")


def _exec(probe: Probe, container: Container) -> Outcome:
    ident = container.plan.identity
    argv = [
        "nsenter",
        f"--target={container.proc.pid}",
        "--mount",
        "--net",
        "--root",
        "--wd",
        "--",
        "setpriv",
        f"--reuid={ident.uid}",
        f"--regid={ident.gid}",
        "--clear-groups",
        "--",
        *probe.command,
    ]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=probe.timeout_s,
            env=dict(container.plan.env),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(False, "timed out")
    return Outcome(done.returncode == 0, f"exit {done.returncode}")


def wait_success(probe: Probe, pod_ip: str, container: Container, budget_s: float) -> Outcome:
    """Retry until success, the container's exit, or `budget_s` (the kubelet's)."""
    deadline = time.monotonic() + budget_s
    last = Outcome(False, "never run")
    while time.monotonic() < deadline:
        if not container.running():
            return Outcome(
                False, f"container exited ({container.proc.returncode}); last probe: {last.detail}"
            )
        last = run_once(probe, pod_ip, container)
        if last.ok:
            return last
        time.sleep(RETRY_S)
    return Outcome(False, f"still failing after {budget_s:g} s: {last.detail}")
