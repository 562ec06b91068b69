"""The pure decisions of the cloud-like proxy: configuration, HTTP/1.1 framing, keep-alive,
which fault a request gets, where it strikes, and pacing. No I/O; tested without a socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from ..errors import ConfigError

_HEAD_END = b"\r\n\r\n"
Fault = Literal["slowdown", "reset", "stall", "corrupt"]


@dataclass(frozen=True)
class FaultRule:
    """Which requests faults may hit; `None` matches all. Lets a test fail one key persistently.

    `path_regex` is searched in the URL-decoded request path, which for path-style S3 requests
    (what clients pointed at a loopback endpoint use) is `/bucket/key`.
    """

    methods: frozenset[str] | None = None
    path_regex: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.path_regex is None or re.search(self.path_regex, path) is not None


@dataclass(frozen=True)
class FaultConfig:
    """Per-request fault probabilities; at most one fault per request, so they sum to <= 1.

    Defaults inject nothing. `seed` makes a run repeatable (one draw per request in arrival
    order). `stall_s` bounds how long a stalled request is held: far beyond any client timeout
    under test, yet finite so a forgotten client cannot pin the proxy forever.
    """

    slowdown_probability: float = 0.0
    reset_probability: float = 0.0
    stall_probability: float = 0.0
    corrupt_probability: float = 0.0
    seed: int = 0
    rule: FaultRule = field(default_factory=FaultRule)
    stall_s: float = 300.0

    def __post_init__(self) -> None:
        probabilities = self.weights()
        if any(not 0.0 <= p <= 1.0 for _, p in probabilities):
            raise ConfigError(f"fault probabilities must be within 0..1, got {probabilities}")
        if sum(p for _, p in probabilities) > 1.0 + 1e-9:
            raise ConfigError(f"fault probabilities must sum to at most 1, got {probabilities}")

    def weights(self) -> tuple[tuple[Fault, float], ...]:
        return (
            ("slowdown", self.slowdown_probability),
            ("reset", self.reset_probability),
            ("stall", self.stall_probability),
            ("corrupt", self.corrupt_probability),
        )


@dataclass(frozen=True)
class ProxyConfig:
    """How cloud-like the proxy is. `0` or `None` disables the delay or the cap.

    - `first_byte_delay_s` 0.020: S3's typical time to first byte within a region.
    - `bandwidth_bytes_per_s` 90e6: what one S3 connection sustains; applies to response bodies
      per client connection, since clients parallelise by opening more connections.
    - `chunk_bytes` 256 KiB: large enough that per-chunk Python overhead is negligible at GB/s,
      small enough to pace smoothly; it is also the token bucket's burst.
    - `io_timeout_s` 60: bound on any single read or write to a peer.
    - `idle_timeout_s` 75: keep-alive connections idle longer are closed (longer than the
      clients' own pool idle times, so they close first, as with a real endpoint).
    """

    first_byte_delay_s: float | None = 0.020
    bandwidth_bytes_per_s: float | None = 90e6
    chunk_bytes: int = 256 * 1024
    io_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if min(self.bandwidth_bytes_per_s or 0, self.first_byte_delay_s or 0) < 0:
            raise ConfigError("bandwidth_bytes_per_s and first_byte_delay_s must be >= 0")
        if self.chunk_bytes < 1024:
            raise ConfigError(f"chunk_bytes must be at least 1024, got {self.chunk_bytes}")


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters since it started.

    Request body bytes are those received from clients (also when a fault discarded them);
    response body bytes are those sent to clients, including the part before a reset.
    """

    connections_total: int = 0
    requests_total: int = 0
    request_body_bytes_total: int = 0
    response_body_bytes_total: int = 0
    slowdowns_total: int = 0
    resets_total: int = 0
    stalls_total: int = 0
    corruptions_total: int = 0


@dataclass(frozen=True)
class Framing:
    """How a message body ends: not at all, after `length` bytes, chunked, or at close."""

    kind: Literal["none", "length", "chunked", "close"]
    length: int = 0


@dataclass(frozen=True)
class Bucket:
    """Token bucket state; `tokens` may go negative (debt) to pace a large write."""

    tokens: float
    stamp_s: float


class BadMessageError(ValueError):
    """The peer sent something that is not HTTP/1.x; the connection is dropped."""


# ---- pure decisions -------------------------------------------------------------------------


def parse_head(raw: bytes) -> tuple[list[str], dict[str, str]]:
    """Start line parts and headers (lower-cased names; repeats joined by ", ")."""
    lines = raw.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    is_response = start[0].startswith("HTTP/") and len(start) >= 2 and start[1].isdigit()
    if not is_response and (len(start) != 3 or not start[2].startswith("HTTP/")):
        raise BadMessageError(f"not an HTTP/1.x start line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadMessageError(f"malformed header line: {line[:100]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return start, headers


def _content_length(headers: dict[str, str]) -> int:
    try:
        length = int(headers["content-length"].split(",")[0])
    except ValueError as e:
        raise BadMessageError(f"bad Content-Length {headers['content-length']!r}") from e
    if length < 0:
        raise BadMessageError(f"negative Content-Length {length}")
    return length


def request_framing(headers: dict[str, str]) -> Framing:
    """RFC 9112 §6.3: chunked wins, then Content-Length, else a request has no body."""
    if headers.get("transfer-encoding", "").lower().rstrip().endswith("chunked"):
        return Framing("chunked")
    if "content-length" in headers:
        length = _content_length(headers)
        return Framing("length", length) if length else Framing("none")
    return Framing("none")


def response_framing(method: str, status: int, headers: dict[str, str]) -> Framing:
    """RFC 9112 §6.3 for responses: HEAD, 1xx, 204 and 304 carry no body whatever they say."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return Framing("none")
    if headers.get("transfer-encoding", "").lower().rstrip().endswith("chunked"):
        return Framing("chunked")
    if "content-length" in headers:
        length = _content_length(headers)
        return Framing("length", length) if length else Framing("none")
    return Framing("close")


def wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens


def choose_fault(faults: FaultConfig, method: str, path: str, draw: float) -> Fault | None:
    """The fault for a request, given one uniform `draw` in [0, 1)."""
    if not faults.rule.matches(method, path):
        return None
    edge = 0.0
    for kind, probability in faults.weights():
        edge += probability
        if draw < edge:
            return kind
    return None


def fault_offset(fault: Fault, body_bytes: int, draw: float) -> int:
    """Body offset where a fault strikes: a reset after half the body, a flip anywhere."""
    return body_bytes // 2 if fault == "reset" else min(body_bytes - 1, int(draw * body_bytes))


def take_tokens(
    bucket: Bucket, nbytes: int, now_s: float, rate: float, burst: float
) -> tuple[Bucket, float]:
    """Charge `nbytes` to the bucket; returns the new state and how long to wait before sending."""
    tokens = min(burst, bucket.tokens + (now_s - bucket.stamp_s) * rate) - nbytes
    return Bucket(tokens, now_s), max(0.0, -tokens / rate)


def slowdown_response(method: str, path: str, request_id: str) -> bytes:
    """S3's 503 SlowDown, with the XML error body SDKs parse to pick their retry policy."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        "<Message>Please reduce your request rate.</Message>"
        f"<Resource>{escape(path)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    head = (
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nx-amz-request-id: {request_id}\r\n\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


_HOP_BY_HOP = (b"connection", b"keep-alive")


def client_response_head(head: bytes, close: bool) -> bytes:
    """The upstream's response head as the proxy sends it on: its own HTTP version and its own
    connection management (RFC 9110 §7.6.1).

    Connection headers are hop-by-hop: werkzeug (moto) closes after every response, but the
    client's connection to the proxy stays alive, as it would with S3. Everything else,
    including the order and spelling of the end-to-end headers, passes unchanged.
    """
    lines = head[: -len(_HEAD_END)].split(b"\r\n")
    kept = [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    tail = [b"Connection: close"] if close else []
    return b"\r\n".join([b"HTTP/1.1" + lines[0][8:], *kept, *tail]) + _HEAD_END


def parse_upstream(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"upstream must be an http://host:port URL, got {url!r}")
    return parts.hostname, parts.port or 80
