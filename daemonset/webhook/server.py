"""The thin aiohttp shell around `review.answer`: TLS, routes, metrics, file reloads.

Everything that decides lives in `review`/`mutate`, and the load bounds in `limits`; here are
only the edges: reading a bounded body under the in-flight budget, decoding JSON defensively
(hostile nesting raises RecursionError, which is caught), large bodies on a worker thread,
timing each review, and a timer that reloads the certificate and the policy when their files
change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ..policy import PolicySource, ReloadingPolicy
from .limits import LoadBudget, max_body_bytes, parse_off_loop
from .metrics import Metrics
from .mutate import Settings
from .review import ReviewResult, answer, invalid
from .tls import ReloadingTLS

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
    #: cluster mode: without a policy file (or with an unreadable one) nothing is allowed
    cluster: bool = True
    settings: Settings = field(default_factory=Settings)
    budget: LoadBudget = field(default_factory=LoadBudget)
    #: how often the certificate and policy files are checked; kubelet refreshes mounted
    #: Secrets and ConfigMaps within about a minute, so a second costs nothing and is plenty
    reload_interval_s: float = 1.0

    @property
    def max_body_bytes(self) -> int:
        return max_body_bytes(self.budget)


class WebhookState:
    """The mutable parts of a running webhook: the policy in force, TLS, metrics, the budget."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.tls = ReloadingTLS(config.cert_file, config.key_file)
        self.metrics.cert_expiry_s = self.tls.expiry_s
        self.policy = ReloadingPolicy(
            PolicySource(config.policy_file, config.cluster, config.reload_interval_s)
        )
        self.metrics.policy_generation = self.policy.generation
        #: created on the serving loop by `running`
        self.slots: asyncio.Semaphore | None = None
        #: one thread: only one large body is ever decoded at a time (see limits.py)
        self.parser = concurrent.futures.ThreadPoolExecutor(1, "webhook-parse")

    def reload(self) -> None:
        result = self.tls.maybe_reload()
        if result:
            self.metrics.reload("certificate", result)
            self.metrics.cert_expiry_s = self.tls.expiry_s
        policy_result = self.policy.maybe_reload()
        if policy_result:
            self.metrics.reload("policy", policy_result)
            self.metrics.policy_generation = self.policy.generation

    def answer_body(self, body: bytes) -> ReviewResult:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return invalid("the body is not valid JSON (or is nested too deeply)")
        return answer(doc, self.config.settings, self.policy.in_force)

    async def answer_in_slot(self, request: web.Request) -> ReviewResult:
        """Wait for one of the in-flight slots (bounded), then read and answer."""
        assert self.slots is not None, "the routes run under running()"
        self.metrics.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), self.config.budget.queue_timeout_s)
        except TimeoutError:
            message = "too many reviews in flight; the API server applies the failure policy"
            return ReviewResult(503, {"error": message}, "overloaded")
        finally:
            self.metrics.waiting -= 1
        self.metrics.in_flight += 1
        try:
            return await self.answer_request(request)
        finally:
            self.metrics.in_flight -= 1
            self.slots.release()

    async def answer_request(self, request: web.Request) -> ReviewResult:
        """Read the body within its deadline and answer it, large bodies off the loop."""
        budget = self.config.budget
        try:
            body = await asyncio.wait_for(request.read(), budget.body_timeout_s)
        except TimeoutError:
            message = f"the body did not arrive within {budget.body_timeout_s:g} s"
            return ReviewResult(408, {"error": message}, "invalid")
        if not parse_off_loop(len(body), budget):
            return self.answer_body(body)
        self.metrics.offloaded += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.parser, self.answer_body, body)


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
            result = await state.answer_in_slot(request)
        except web.HTTPRequestEntityTooLarge:
            state.metrics.review("invalid", time.perf_counter() - started)
            raise
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
    state.slots = asyncio.Semaphore(config.budget.max_in_flight)
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
        state.parser.shutdown(wait=True, cancel_futures=True)


async def _reload_forever(state: WebhookState, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            state.reload()
        except Exception:  # a reload bug must not stop the reloads, nor the serving
            log.exception("reloading the certificate or the policy failed")
