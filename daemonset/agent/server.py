"""The HTTP shell of docs/agent-api.md: aiohttp on a unix socket, plus a TCP metrics port.

Handlers parse, call `Agent`, and turn shardcache errors into `{"error": {kind, message}}` with
the status of the one kind table (`shardcache.errors.CODES`); no decision is made here. The
TCP port serves only /metrics, /healthz and /readyz (the kubelet's probes and Prometheus reach
it; the dataset API stays on the socket). On the socket, every request passes `auth.refusal`
first: GETs are open to whoever can connect, everything else needs root (`SO_PEERCRED`). The
optional status socket (hostpath mode) serves a few GETs and nothing else.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from shardcache.errors import CacheError, ConfigError, UnavailableError, codes_of, redact
from shardcache.partition import Partition, parse_optional
from shardcache.status import DatasetStatus, StatusJSON

from ..prometheus import policy_generation
from .auth import READ_METHODS, Peer, peer_of, refusal
from .leasekeeper import LeaseKeeper
from .logs import kv
from .metrics import Family, Snapshot, families, render
from .service import Agent

log = logging.getLogger("shardcache.agent.http")

AGENT_KEY: web.AppKey[Agent] = web.AppKey("agent", Agent)
STOPPING_KEY: web.AppKey[list[bool]] = web.AppKey("stopping", list)
LEASES_KEY: web.AppKey[LeaseKeeper] = web.AppKey("leases", LeaseKeeper)
#: the caller of a request on a unix socket, set by `auth_middleware`
PEER = "shardcache.peer"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(kind: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"kind": kind, "message": redact(message)}}, status=codes_of(kind).http
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(
                "not_found" if e.status == 404 else "config",
                f"{request.method} {request.path}: {e.reason}",
            )
        raise
    except CacheError as e:
        return error_response(e.kind, str(e))
    except OSError as e:
        log.error("request failed", extra=kv(path=request.path, error=redact(str(e))))
        return error_response("cache_state", f"{type(e).__name__}: {e}")


def request_peer(request: web.Request) -> Peer | None:
    """The process that sent `request`, when it came over a unix socket."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    return peer_of(sock)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    peer = request_peer(request)
    reason = refusal(peer, request.method, request.path)
    if reason is not None:
        log.warning(
            "refused", extra=kv(path=request.path, uid=peer and peer.uid, pid=peer and peer.pid)
        )
        return error_response("access_denied", reason)
    request[PEER] = peer
    return await handler(request)


@web.middleware
async def read_only_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The status socket answers every change with 403, so a client there (a hostpath pod)
    knows to read elsewhere rather than take it for a missing route."""
    if request.method not in READ_METHODS:
        return error_response(
            "access_denied", f"{request.method} {request.path}: this socket is read-only"
        )
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError("the request body must be a JSON object") from e
    if not isinstance(doc, dict):
        raise ConfigError("the request body must be a JSON object")
    return doc


def _str(doc: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f'"{name}" must be a non-empty string')
    return value


def _query_url(request: web.Request) -> str:
    url = request.query.get("url")
    if not url:
        raise ConfigError("the query parameter url= is required")
    return url


def _agent(request: web.Request) -> Agent:
    return request.app[AGENT_KEY]


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    if _agent(request).ready and not request.app[STOPPING_KEY][0]:
        return web.Response(text="ready")
    return web.Response(text="not ready: adopting the cache", status=503)


async def metrics(request: web.Request) -> web.Response:
    agent = _agent(request)
    snapshot = await agent.snapshot() if agent.ready else _empty_snapshot(agent)
    agent.policy.maybe_reload()
    fams = [*families(agent.counters, snapshot), policy_generation(agent.policy.generation)]
    leases = request.app.get(LEASES_KEY)
    if leases is not None:
        fams += lease_families(len(leases.book.leases), leases.reclaimed, leases.sweeps)
    text = render(fams)
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def lease_families(held: int, reclaimed: int, sweeps: int) -> list[Family]:
    def one(name: str, kind: str, help_: str, value: int) -> Family:
        return Family(name, kind, help_, (("", {}, value),))

    return [
        one("shardcache_leases", "gauge", "Pins of non-pod owners held by a lease.", held),
        one(
            "shardcache_lease_reclaims_total",
            "counter",
            "Pins released because their lease expired (the owner died).",
            reclaimed,
        ),
        one("shardcache_lease_sweeps_total", "counter", "Lease sweeps run.", sweeps),
    ]


def _empty_snapshot(agent: Agent) -> Snapshot:
    return Snapshot(
        engine=agent.engine.stats(),
        queue_depth=0,
        used_bytes=0,
        capacity_bytes=agent.engine.config.max_bytes or 0,
        datasets={},
        ready=False,
    )


def _serving(request: web.Request) -> Agent:
    agent = _agent(request)
    if request.app[STOPPING_KEY][0]:
        raise UnavailableError("the agent is shutting down; retry on the next one")
    if not agent.ready:
        raise UnavailableError("the agent is still adopting its cache; retry in a moment")
    return agent


async def register(request: web.Request) -> web.Response:
    agent = _serving(request)
    doc = await _body(request)
    durable, refresh = doc.get("durable", False), doc.get("refresh", False)
    if not isinstance(durable, bool) or not isinstance(refresh, bool):
        raise ConfigError('"durable" and "refresh" must be true or false')
    url, owner = _str(doc, "url"), _str(doc, "owner")
    status = await agent.register(
        url,
        owner,
        _str(doc, "namespace", required=False),
        doc.get("prefetch") or "all",
        _partition(_str(doc, "partition", required=False)),
        refresh=refresh,
    )
    request.app[LEASES_KEY].registered(url, owner, request.get(PEER), durable)
    return web.json_response(_json(status))


def _partition(text: str | None) -> Partition | None:
    try:
        return parse_optional(text)
    except ConfigError as e:
        raise ConfigError(f"partition must be I/N with 0 <= I < N, like 0/4: {e}") from None


async def release(request: web.Request) -> web.Response:
    agent = _serving(request)
    doc = await _body(request)
    url, owner = _str(doc, "url"), _str(doc, "owner")
    leases = request.app[LEASES_KEY]
    leases.check_release(url, owner, request.get(PEER))
    answer = await agent.release(url, owner)
    leases.released(url, owner)
    return web.json_response(answer)


async def datasets(request: web.Request) -> web.Response:
    agent = _serving(request)
    return web.json_response(
        {
            "datasets": [_json(s) for s in await agent.statuses()],
            "refusals": list(agent.refusals.values()),
        }
    )


async def dataset_status(request: web.Request) -> web.Response:
    url = _query_url(request)
    status = await _serving(request).status(url)
    if status is None:
        return error_response(
            "not_found",
            f"the agent does not know the dataset {url}; register it with POST /v1/datasets",
        )
    return web.json_response(_json(status))


async def fetch(request: web.Request) -> web.Response:
    doc = await _body(request)
    return web.json_response(await _serving(request).fetch(_str(doc, "url")))


#: objects per manifest page: ~50 bytes each in JSON, so a page is a few MiB at most
MANIFEST_PAGE_DEFAULT = 10_000
MANIFEST_PAGE_MAX = 100_000


async def manifest(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", MANIFEST_PAGE_DEFAULT))
    except ValueError:
        raise ConfigError("limit= must be an integer") from None
    if not 1 <= limit <= MANIFEST_PAGE_MAX:
        raise ConfigError(f"limit= must be between 1 and {MANIFEST_PAGE_MAX}")
    after = request.query.get("after", "")
    page = await _serving(request).manifest(_query_url(request), after, limit)
    return web.json_response(page.as_json())


async def report_view(request: web.Request) -> web.Response:
    doc = await _body(request)
    delta, failures = doc.get("counts") or {}, doc.get("failures") or []
    if not isinstance(delta, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in delta.values()
    ):
        raise ConfigError('"counts" must map names to integers')
    if not isinstance(failures, list) or not all(isinstance(f, dict) for f in failures):
        raise ConfigError('"failures" must be a list of objects')
    _serving(request).views.report(_str(doc, "url"), delta, failures)
    return web.json_response({"ok": True})


async def path(request: web.Request) -> web.Response:
    return web.json_response({"path": _serving(request).path(_query_url(request))})


async def verify(request: web.Request) -> web.Response:
    doc = await _body(request)
    report = await _serving(request).verify(_str(doc, "url", required=False))
    return web.json_response(report.as_json())


async def evict(request: web.Request) -> web.Response:
    doc = await _body(request)
    force = doc.get("force", False)
    if not isinstance(force, bool):
        raise ConfigError('"force" must be true or false')
    evicted = await _serving(request).evict(_str(doc, "url"), force)
    return web.json_response(evicted.as_json())


def _json(status: DatasetStatus) -> StatusJSON:
    """The status document of docs/agent-api.md (which has no `listed_at`)."""
    return status.as_json(listed_at=False)


def _app(agent: Agent, stopping: list[bool], *, routes: str) -> web.Application:
    guard = {"api": [auth_middleware], "status": [read_only_middleware]}.get(routes, [])
    middlewares = [errors_middleware, *guard]
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[AGENT_KEY] = agent
    app[STOPPING_KEY] = stopping
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if routes in ("api", "metrics"):
        app.router.add_get("/metrics", metrics)
    if routes in ("api", "status"):
        app.router.add_get("/v1/datasets/status", dataset_status)
        app.router.add_get("/v1/path", path)
    if routes == "api":
        app.router.add_post("/v1/datasets", register)
        app.router.add_post("/v1/datasets/release", release)
        app.router.add_get("/v1/datasets", datasets)
        app.router.add_get("/v1/datasets/manifest", manifest)
        app.router.add_post("/v1/views/report", report_view)
        app.router.add_post("/v1/objects/fetch", fetch)
        app.router.add_post("/v1/verify", verify)
        app.router.add_post("/v1/evict", evict)
    return app


def api_app(agent: Agent, stopping: list[bool], leases: LeaseKeeper) -> web.Application:
    """The full API, for the main socket (changes need root, see auth.py)."""
    app = _app(agent, stopping, routes="api")
    app[LEASES_KEY] = leases
    return app


def metrics_app(agent: Agent, stopping: list[bool], leases: LeaseKeeper) -> web.Application:
    app = _app(agent, stopping, routes="metrics")
    app[LEASES_KEY] = leases
    return app


def status_app(agent: Agent, stopping: list[bool]) -> web.Application:
    """Read-only status for pods (hostpath mode): one dataset's status by its URL, paths and
    health; no listing of every dataset (other tenants' URLs), no metrics, no POST at all."""
    return _app(agent, stopping, routes="status")


def claim_socket(path: Path) -> None:
    """Remove a stale socket file left by a dead agent; refuse to steal a live one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket; remove it or choose --socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            os.unlink(path)  # nobody listens: stale
            return
    raise ConfigError(f"another agent is serving on {path}; stop it first")
