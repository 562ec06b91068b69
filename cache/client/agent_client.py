"""A small synchronous client for the node agent's HTTP/JSON API on a unix socket.

It uses the standard library only (`http.client` over `AF_UNIX`), opens one connection per
call and holds no event loop and no thread, so it is safe in DataLoader workers after `fork`
and in the CSI plugin's gRPC threads. The API is documented in docs/agent-api.md.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import errors
from ..reports import Evicted, VerifyReport
from ..status import DatasetStatus

T = TypeVar("T")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class AgentClient:
    """Talks to one agent. Every call has a finite timeout; transport failures raise
    `UnavailableError`, API errors the shardcache error named by the agent."""

    socket_path: str
    #: most calls answer from memory; a fetch waits for a download, hence the longer one
    timeout_s: float = 10.0
    fetch_timeout_s: float = 600.0

    def healthy(self) -> bool:
        try:
            return self._request("GET", "/healthz", raw=True) is not None
        except errors.CacheError:
            return False

    def ready(self) -> bool:
        try:
            self._request("GET", "/readyz", raw=True)
            return True
        except errors.CacheError:
            return False

    def register(
        self,
        url: str,
        owner: str,
        namespace: str | None = None,
        prefetch: str = "all",
        *,
        durable: bool = False,
        partition: str | None = None,
        refresh: bool = False,
    ) -> DatasetStatus:
        """Pin `url` for `owner` and prefetch it, or only the share `partition` ("I/N")
        (registering again renews the owner's lease; `durable`: the pin lasts until released,
        even after this process ends; `refresh`: list the dataset again even if its saved
        listing is fresh)."""
        body = {
            "url": url,
            "owner": owner,
            "namespace": namespace,
            "prefetch": prefetch,
            "durable": durable,
            "partition": partition,
            "refresh": refresh,
        }
        return _status(self._request("POST", "/v1/datasets", body))

    def release(self, url: str, owner: str) -> None:
        self._request("POST", "/v1/datasets/release", {"url": url, "owner": owner})

    def datasets(self) -> list[DatasetStatus]:
        return [_status(d) for d in self._request("GET", "/v1/datasets")["datasets"]]

    def status(self, url: str) -> DatasetStatus:
        query = urllib.parse.urlencode({"url": url})
        return _status(self._request("GET", "/v1/datasets/status?" + query))

    def fetch(self, url: str) -> str | None:
        """Make one object local now; its path, or None when it must be read through."""
        answer = self._request(
            "POST", "/v1/objects/fetch", {"url": url}, timeout_s=self.fetch_timeout_s
        )
        path = answer.get("path")
        return str(path) if path else None

    def verify(self, url: str | None) -> VerifyReport:
        """Check (and repair) the agent's files of `url`, or of its whole cache."""
        answer = self._request("POST", "/v1/verify", {"url": url}, timeout_s=self.fetch_timeout_s)
        return _typed(VerifyReport.from_json, answer)

    def evict(self, url: str, force: bool = False) -> Evicted:
        answer = self._request(
            "POST", "/v1/evict", {"url": url, "force": force}, timeout_s=self.fetch_timeout_s
        )
        return _typed(Evicted.from_json, answer)

    def manifest(self, url: str, page: int = 10_000) -> Iterator[tuple[str, int]]:
        """Every object of a listed dataset as (key relative to the prefix, size), in key
        order, fetched a page at a time; UnavailableError while it is not listed yet."""
        after: str | None = ""
        while after is not None:
            query = urllib.parse.urlencode({"url": url, "after": after, "limit": page})
            doc = self._request("GET", "/v1/datasets/manifest?" + query)
            for key, size in doc["objects"]:
                yield str(key), int(size)
            after = doc.get("next")

    def report_view(self, url: str, counts: dict[str, int], failures: list[dict[str, str]]) -> None:
        """Tell the agent about opens through a read-through view of `url` (a delta)."""
        self._request(
            "POST", "/v1/views/report", {"url": url, "counts": counts, "failures": failures}
        )

    def path(self, url: str) -> str:
        return str(self._request("GET", "/v1/path?" + urllib.parse.urlencode({"url": url}))["path"])

    def _request(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        raw: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        conn = _UnixHTTPConnection(self.socket_path, timeout_s or self.timeout_s)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise errors.UnavailableError(
                f"the shardcache agent at {self.socket_path} did not answer "
                f"({e.__class__.__name__}: {e}); is shardcache-agent running on this node?"
            ) from e
        finally:
            conn.close()
        if response.status >= 400:
            raise _error_from(response.status, data)
        if raw:
            return data
        return json.loads(data) if data else {}


def _status(doc: Any) -> DatasetStatus:
    return _typed(DatasetStatus.from_json, doc)


def _typed(parse: Callable[[Any], T], doc: Any) -> T:
    """An answer as its typed value; one that does not parse is the agent misbehaving."""
    try:
        return parse(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise errors.UnavailableError(
            f"the shardcache agent sent an answer that does not parse: {e}"
        ) from e


def _error_from(status: int, data: bytes) -> errors.CacheError:
    try:
        err = json.loads(data)["error"]
        cls = errors.CLASSES.get(err.get("kind", ""), errors.CacheError)
        return cls(str(err.get("message", "")))
    except (ValueError, KeyError, TypeError):
        text = data[:200].decode("utf-8", "replace")
        if status == 503:
            return errors.UnavailableError(f"the shardcache agent is not ready: {text}")
        return errors.CacheError(f"the shardcache agent answered {status}: {text}")
