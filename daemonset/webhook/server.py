"""The thin aiohttp shell around `review.answer`: TLS, routes, metrics, file reloads.

Everything that decides lives in `review`/`mutate`; here are only the edges: reading a bounded
body, decoding JSON defensively (hostile nesting raises RecursionError, which is caught), timing
each review, and a timer that reloads the certificate and the policy when their files change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from shardcache.errors import ConfigError

from ..policy import Policy, load_policy
from .metrics import Metrics
from .mutate import Settings
from .review import ReviewResult, answer, invalid
from .tls import ReloadingTLS, file_stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """How the webhook process serves; built once by `main` from flags and environment."""

    cert_file: Path
    key_file: Path
    port: int = 8443
    #: None binds every interface (the Service reaches the pod IP, v4 or v6)
    host: str | None = None
    policy_file: Path | None = None
    settings: Settings = field(default_factory=Settings)
    #: an AdmissionReview holds the pod twice at most; etcd caps an object at 1.5 MiB
    max_body_bytes: int = 4 * 1024 * 1024
    #: how often the certificate and policy files are checked; kubelet refreshes mounted
    #: Secrets and ConfigMaps within about a minute, so a second costs nothing and is plenty
    reload_interval_s: float = 1.0


class WebhookState:
    """The mutable parts of a running webhook: the policy in force, TLS, metrics."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.tls = ReloadingTLS(config.cert_file, config.key_file)
        self.metrics.cert_expiry_s = self.tls.expiry_s
        self.policy: Policy = load_policy(config.policy_file)
        self._policy_stamp = self._stamp_policy()

    def _stamp_policy(self) -> object:
        return file_stamp(self.config.policy_file) if self.config.policy_file else None

    def reload(self) -> None:
        result = self.tls.maybe_reload()
        if result:
            self.metrics.reload("certificate", result)
            self.metrics.cert_expiry_s = self.tls.expiry_s
        stamp = self._stamp_policy()
        if stamp != self._policy_stamp:
            self._policy_stamp = stamp
            try:
                self.policy = load_policy(self.config.policy_file)
            except ConfigError as e:
                log.warning("policy file changed but is invalid (%s); keeping the old one", e)
                self.metrics.reload("policy", "error")
            else:
                self.metrics.reload("policy", "ok")

    def answer_body(self, body: bytes) -> ReviewResult:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return invalid("the body is not valid JSON (or is nested too deeply)")
        return answer(doc, self.config.settings, self.policy)


def make_app(state: WebhookState) -> web.Application:
    app = web.Application(client_max_size=state.config.max_body_bytes)

    async def mutate_route(request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            if (request.content_length or 0) > state.config.max_body_bytes:
                # Refuse before reading: a declared 100 MiB body is not worth receiving.
                raise web.HTTPRequestEntityTooLarge(
                    max_size=state.config.max_body_bytes, actual_size=request.content_length or 0
                )
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            state.metrics.review("invalid", time.perf_counter() - started)
            raise
        result = state.answer_body(body)
        response = web.json_response(result.body, status=result.status)
        state.metrics.review(result.outcome, time.perf_counter() - started)
        return response

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            text=state.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    app.router.add_post("/mutate", mutate_route)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def bind(host: str | None, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (tests read it back)."""
    if host is None and not socket.has_ipv6:
        host = "0.0.0.0"
    family = socket.AF_INET6 if host is None or ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host is None:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # v4 and v6 alike
    sock.bind((host or "::", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[tuple[WebhookState, int]]:
    """Serve until the block exits; yields the state and the bound port."""
    state = WebhookState(config)
    runner = web.AppRunner(
        make_app(state), access_log=None, handle_signals=False, shutdown_timeout=5.0
    )
    await runner.setup()
    reloader: asyncio.Task[None] | None = None
    try:
        sock = bind(config.host, config.port)
        try:
            await web.SockSite(runner, sock, ssl_context=state.tls.front).start()
        except BaseException:
            sock.close()
            raise
        reloader = asyncio.create_task(_reload_forever(state, config.reload_interval_s))
        yield state, sock.getsockname()[1]
    finally:
        if reloader is not None:
            reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloader
        await runner.cleanup()


async def _reload_forever(state: WebhookState, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            state.reload()
        except Exception:  # a reload bug must not stop the reloads, nor the serving
            log.exception("reloading the certificate or the policy failed")
