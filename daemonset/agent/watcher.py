"""The pod watcher: pins the datasets of the pods on this node, for as long as they run.

It lists the pods with `fieldSelector=spec.nodeName=NODE`, reconciles (registers what running
pods want, releases pod-UID pins of pods that are gone), then watches from the list's
resourceVersion. A 410 Gone means the watch fell too far behind: list and reconcile again. A
dropped connection means back off and watch again from the last version seen. Registration
happens when a pod is first seen, even Pending, so the prefetch runs while images are pulled.

The official `kubernetes` client is blocking, so the loop runs in its own thread and hands
each decision to the agent's event loop; every request carries `_request_timeout`, every
watch `timeout_seconds`. What to do with a pod is decided by `desired` (pure).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from shardcache.errors import CacheError, redact

from ..policy import ReloadingPolicy
from . import desired
from .logs import kv
from .service import Agent

log = logging.getLogger("shardcache.agent.watcher")
T = TypeVar("T")


@dataclass(frozen=True)
class WatcherConfig:
    node: str
    #: a kubeconfig file; None means the in-cluster service account
    kubeconfig: str | None = None
    #: server-side end of each watch; the API server caps it anyway, and a fresh watch every
    #: few minutes costs nothing
    watch_timeout_s: int = 300
    #: (connect, read) for every request; the read bound exceeds the watch's own timeout so a
    #: healthy, quiet watch is never cut by the client
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 330.0
    #: back-off after a failure, doubled up to the maximum
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: bound on handing one decision to the agent's loop
    call_timeout_s: float = 60.0


class PodWatcher:
    def __init__(
        self,
        agent: Agent,
        policy: ReloadingPolicy,
        config: WatcherConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.agent = agent
        self.policy = policy
        self.config = config
        self.loop = loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: pod uid -> dataset URLs registered for it by this watcher
        self._registered: dict[str, set[str]] = {}
        self._reported: set[tuple[str, str]] = set()
        #: pod uid -> (namespace, name) of the opted-in pods on this node, for Events
        self._pods: dict[str, tuple[str, str]] = {}
        self._api: Any = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        # a daemon thread: a watch blocked on a quiet connection must not hold up exit
        self._thread = threading.Thread(target=self._run, name="pod-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._api = _core_api(self.config.kubeconfig)
        except Exception as e:  # any config failure: log it, never crash the agent
            log.error(
                "cannot configure the Kubernetes client; pod watcher off",
                extra=kv(error=redact(str(e))),
            )
            return
        backoff = self.config.backoff_s
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                backoff = self.config.backoff_s
            except Exception as e:  # the watcher must outlive any failure
                if getattr(e, "status", None) == 410:
                    log.info("watch expired (410 Gone); listing again", extra=kv())
                    version = None
                    continue
                log.warning(
                    "pod watch failed; retrying",
                    extra=kv(error=redact(f"{type(e).__name__}: {e}")[:500], backoff_s=backoff),
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.max_backoff_s)
        self._api.api_client.close()

    # -- list and watch -------------------------------------------------------------------
    def _timeouts(self) -> tuple[float, float]:
        return (self.config.connect_timeout_s, self.config.read_timeout_s)

    def _relist(self) -> str:
        resp = self._api.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.config.node}",
            _preload_content=False,
            _request_timeout=self._timeouts(),
        )
        doc = json.loads(resp.data)
        pods = doc.get("items") or []
        policy = self.policy.current()
        views = [v for v in (desired.view(p, policy) for p in pods) if v is not None]
        self._pods = {v.uid: (v.namespace, v.name) for v in views}
        pins = self._call(self.agent.pins())
        plan = desired.plan(views, pins)
        self._registered = {}
        for want in plan.register:
            self._register(want)
        for url, owner in plan.release:
            self._call(self.agent.release(url, owner))
        for v in views:
            self._report(v)
        live = {v.uid for v in views}
        self._forget_refusals(lambda uid: uid not in live)
        log.info(
            "pods listed",
            extra=kv(
                node=self.config.node,
                pods=len(pods),
                opted_in=len(views),
                registered=len(plan.register),
                released=len(plan.release),
            ),
        )
        return str(doc.get("metadata", {}).get("resourceVersion") or "0")

    def _watch(self, version: str) -> str:
        from kubernetes import watch

        w = watch.Watch()  # type: ignore[no-untyped-call]
        stream = w.stream(  # type: ignore[no-untyped-call]
            self._api.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={self.config.node}",
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.config.watch_timeout_s,
            _request_timeout=self._timeouts(),
            # deserialize=False would be cheaper, but the client then fails on ERROR events
            # (KeyError 'raw_object', kubernetes 37) instead of raising ApiException(410)
        )
        for event in stream:
            if self._stop.is_set():
                w.stop()  # type: ignore[no-untyped-call]
                break
            pod = event.get("raw_object") or {}
            version = str((pod.get("metadata") or {}).get("resourceVersion") or version)
            if event.get("type") != "BOOKMARK":
                self._apply(str(event.get("type")), pod)
        return version

    # -- decisions to actions -------------------------------------------------------------
    def _apply(self, kind: str, pod: dict[str, Any]) -> None:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        v = desired.view(pod, self.policy.current())
        if v is not None and kind != "DELETED":
            self._pods[v.uid] = (v.namespace, v.name)
        else:
            self._pods.pop(uid, None)
        if kind == "DELETED" or (v is not None and not v.active):
            if uid in self._registered or kind == "DELETED":
                self._release_owner(uid)
            return
        if v is None:
            return
        done = self._registered.get(v.uid, set())
        for want in v.wants:
            if want.url not in done:
                self._register(want)
        self._report(v)

    def _register(self, want: desired.Want) -> None:
        try:
            self._call(
                self.agent.register(
                    want.url, want.owner, want.namespace, want.prefetch, want.partition
                )
            )
        except CacheError as e:
            log.warning(
                "cannot register a pod's dataset",
                extra=kv(url=want.url, owner=want.owner, error=redact(str(e))),
            )
            return
        self._registered.setdefault(want.owner, set()).add(want.url)

    def _release_owner(self, uid: str) -> None:
        self._registered.pop(uid, None)
        if uid:
            self._call(self.agent.release_owner(uid))
        self._forget_refusals(lambda owner: owner == uid)

    def _report(self, v: desired.PodView) -> None:
        for r in v.refusals:
            if (r.owner, r.url) in self._reported:
                continue
            self._reported.add((r.owner, r.url))
            self.loop.call_soon_threadsafe(
                self.agent.refusals.__setitem__, (r.owner, r.url), r.as_json()
            )
            log.warning(
                "dataset refused",
                extra=kv(pod=f"{r.namespace}/{r.pod}", url=r.url, reason=r.reason),
            )
            self._event(r)

    def _event(self, r: desired.Refusal) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self._api.create_namespaced_event(
                r.namespace,
                desired.event_body(r, self.config.node, now),
                _request_timeout=self._timeouts(),
            )
        except Exception as e:  # an event is best effort; the log has it
            log.warning(
                "cannot record an event",
                extra=kv(pod=f"{r.namespace}/{r.pod}", error=redact(str(e))[:300]),
            )

    def open_failed(self, url: str, failure: dict[str, str]) -> None:
        """An Event on the pod whose view failed an open (`failure["pod"]`: its UID); called
        off the agent's loop (it waits on the API server)."""
        known = self._pods.get(failure.get("pod", ""))
        if known is None or self._api is None:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = desired.open_failure_event_body(
            known[0], known[1], failure["pod"], url, failure, self.config.node, now
        )
        try:
            self._api.create_namespaced_event(known[0], body, _request_timeout=self._timeouts())
        except Exception as e:  # an event is best effort; status and the log have it
            log.warning(
                "cannot record an event",
                extra=kv(pod=f"{known[0]}/{known[1]}", error=redact(str(e))[:300]),
            )

    def _forget_refusals(self, gone: Any) -> None:
        for key in [k for k in self._reported if gone(k[0])]:
            self._reported.discard(key)
            self.loop.call_soon_threadsafe(self.agent.refusals.pop, key, None)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.config.call_timeout_s)


def _core_api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    if kubeconfig:
        api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return client.CoreV1Api(api_client)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.CoreV1Api(client.ApiClient(configuration))
