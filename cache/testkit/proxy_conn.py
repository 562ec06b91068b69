"""One client connection of the cloud-like proxy: the per-connection I/O of `CloudProxy`.

A connection serves request after request over its own upstream connection, applying the
fault the proxy chose for each request and pacing the response body. The decisions come from
proxy_rules.py; the server that owns the counters and the fault dice is `proxy.CloudProxy`,
seen from here only through the small `ProxyHooks` protocol (so the two modules do not import
each other).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from .proxy_rules import (
    _HEAD_END,
    BadMessageError,
    Bucket,
    Fault,
    Framing,
    ProxyConfig,
    client_response_head,
    parse_head,
    request_framing,
    response_framing,
    slowdown_response,
    take_tokens,
    wants_keep_alive,
)

_T = TypeVar("_T")


class ProxyHooks(Protocol):
    """What a connection needs from the server: its settings, counters and fault dice."""

    config: ProxyConfig
    upstream: tuple[str, int]

    def count(self, name: str, amount: int = 1) -> None: ...

    def next_fault(self, method: str, path: str) -> Fault | None: ...

    def offset_for(self, fault: Fault, body_bytes: int) -> int: ...


class _Aborted(Exception):
    """The connection was cut on purpose (a fault); nothing more to say to the client."""


_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
PEER_ERRORS = (
    ConnectionError,
    TimeoutError,
    asyncio.IncompleteReadError,
    BadMessageError,
    asyncio.LimitOverrunError,
    _Aborted,
)


async def _close(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    """Close and wait until the socket is really gone, so no transport outlives the proxy."""
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            await writer.wait_closed()
    writer.transport.abort()


class Connection:
    """One client connection, request after request, with its own upstream connection."""

    def __init__(
        self, proxy: ProxyHooks, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy, self.cfg, self.reader, self.writer = proxy, proxy.config, reader, writer
        self.upstream: _Stream | None = None
        self.bucket = Bucket(float(self.cfg.chunk_bytes), asyncio.get_running_loop().time())

    async def io(self, awaitable: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self.cfg.io_timeout_s):
            return await awaitable

    async def run(self) -> None:
        abort = True
        try:
            while await self.serve_one():
                self.cfg = self.proxy.config  # pick up set_faults() between requests
            abort = False
        except PEER_ERRORS:
            pass
        finally:
            await self.drop_upstream()
            await _close(self.writer, abort=abort)

    async def serve_one(self) -> bool:
        """Serve one request; False when the connection must end."""
        try:
            async with asyncio.timeout(self.cfg.idle_timeout_s):
                raw = await self.reader.readuntil(_HEAD_END)
        except (TimeoutError, asyncio.IncompleteReadError):
            return False
        (method, target, version), headers = parse_head(raw)
        self.proxy.count("requests_total")
        path = unquote(urlsplit(target).path)
        fault = self.proxy.next_fault(method, path)
        if self.cfg.first_byte_delay_s:
            await asyncio.sleep(self.cfg.first_byte_delay_s)
        keep = wants_keep_alive(version, headers)
        if fault == "stall":
            return await self.stall()
        if fault == "slowdown":
            framing = request_framing(headers)
            if framing.kind != "none" and "100-continue" in headers.get("expect", "").lower():
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.copy_body(framing, self.reader, None)
            self.proxy.count("slowdowns_total")
            self.writer.write(slowdown_response(method, path, f"SHARDCACHE{id(self):X}"))
            await self.io(self.writer.drain())
            return keep
        return await self.forward(raw, method, headers, fault) and keep

    async def stall(self) -> bool:
        self.proxy.count("stalls_total")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.faults.stall_s):
                while await self.reader.read(self.cfg.chunk_bytes):
                    pass
        return False

    async def forward(
        self, raw: bytes, method: str, headers: dict[str, str], fault: Fault | None
    ) -> bool:
        framing = request_framing(headers)
        expect = "100-continue" in headers.get("expect", "").lower() and framing.kind != "none"
        for attempt in (0, 1):
            reused = await self.connect_upstream()
            try:
                head, body_sent = await self.exchange(raw, framing, expect)
                break
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                # A pooled upstream connection may have been closed while idle; only a request
                # without a body can be sent again, since the client's body is already consumed.
                stale = not isinstance(e, asyncio.IncompleteReadError) or not e.partial
                if attempt or not reused or framing.kind != "none" or not stale:
                    raise
                await self.drop_upstream()
        (version, status, *_), response_headers = parse_head(head)
        out = response_framing(method, int(status), response_headers)
        await self.relay_response(client_response_head(head, out.kind == "close"), out, fault)
        if out.kind == "close" or not wants_keep_alive(version, response_headers):
            await self.drop_upstream()
        return out.kind != "close" and body_sent

    async def exchange(self, raw: bytes, framing: Framing, expect: bool) -> tuple[bytes, bool]:
        """Send the request; relay interim 1xx; return the final head and if the body went."""
        assert self.upstream is not None
        up_reader, up_writer = self.upstream
        up_writer.write(raw)
        if not expect:
            await self.copy_body(framing, self.reader, up_writer)
        while True:
            head = await self.io(up_reader.readuntil(_HEAD_END))
            if not head.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1")):
                return head, not expect
            self.writer.write(head)  # e.g. 100 Continue: now the client sends its body
            if expect:
                await self.copy_body(framing, self.reader, up_writer)
                expect = False

    async def connect_upstream(self) -> bool:
        """Ensure an upstream connection; True when an existing one is reused."""
        if self.upstream and not self.upstream[0].at_eof() and not self.upstream[1].is_closing():
            return True
        await self.drop_upstream()
        host, port = self.proxy.upstream
        self.upstream = await self.io(
            asyncio.open_connection(host, port, limit=self.cfg.chunk_bytes)
        )
        return False

    async def drop_upstream(self) -> None:
        if self.upstream is not None:
            writer, self.upstream = self.upstream[1], None
            await _close(writer, abort=True)

    async def copy_body(
        self, framing: Framing, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None
    ) -> None:
        """Forward (or, with no `dst`, discard) a request body, framing bytes included."""

        async def send(data: bytes) -> None:
            self.proxy.count("request_body_bytes_total", len(data))
            if dst is not None:
                dst.write(data)
                await self.io(dst.drain())

        async def send_raw(data: bytes) -> None:
            if dst is not None:
                dst.write(data)

        if framing.kind == "length":
            await self.copy_exact(src, framing.length, send)
        elif framing.kind == "chunked":
            await self.copy_chunked(src, send, send_raw)

    async def copy_exact(
        self, src: asyncio.StreamReader, nbytes: int, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        while nbytes > 0:
            piece = await self.io(src.read(min(nbytes, self.cfg.chunk_bytes)))
            if not piece:
                raise asyncio.IncompleteReadError(b"", nbytes)
            nbytes -= len(piece)
            await send(piece)

    async def copy_chunked(
        self,
        src: asyncio.StreamReader,
        send: Callable[[bytes], Awaitable[None]],
        send_raw: Callable[[bytes], Awaitable[None]],
    ) -> None:
        while True:
            line = await self.io(src.readuntil(b"\r\n"))
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise BadMessageError(f"bad chunk size line {line[:40]!r}") from e
            await send_raw(line)
            if size == 0:
                break
            await self.copy_exact(src, size, send)
            await send_raw(await self.io(src.readexactly(2)))
        while (trailer := await self.io(src.readuntil(b"\r\n"))) != b"\r\n":
            await send_raw(trailer)
        await send_raw(trailer)

    async def relay_response(self, head: bytes, framing: Framing, fault: Fault | None) -> None:
        if fault == "reset" and framing.kind == "none":
            self.proxy.count("resets_total")
            raise _Aborted  # nothing to cut in the middle of: drop before the response
        assert self.upstream is not None
        body = _BodyWriter(self, fault, framing.length if framing.kind == "length" else None)
        self.writer.write(head)
        if framing.kind == "length":
            await self.copy_exact(self.upstream[0], framing.length, body.send)
        elif framing.kind == "chunked":
            await self.copy_chunked(self.upstream[0], body.send, body.send_raw)
        elif framing.kind == "close":
            while piece := await self.io(self.upstream[0].read(self.cfg.chunk_bytes)):
                await body.send(piece)
        await self.io(self.writer.drain())

    async def pace(self, nbytes: int) -> None:
        rate = self.cfg.bandwidth_bytes_per_s
        if rate:
            now = asyncio.get_running_loop().time()
            self.bucket, wait_s = take_tokens(self.bucket, nbytes, now, rate, self.cfg.chunk_bytes)
            if wait_s > 0:
                await asyncio.sleep(wait_s)


class _BodyWriter:
    """Sends a response body to the client, paced, applying a reset or corrupt fault on the way.

    A fault's offset is fixed from the body length when known, else from the first piece.
    """

    def __init__(self, conn: Connection, fault: Fault | None, length: int | None) -> None:
        self.conn, self.offset, self.strike_at = conn, 0, None
        self.fault = fault if fault in ("reset", "corrupt") else None
        if self.fault and length:
            self.strike_at = conn.proxy.offset_for(self.fault, length)

    async def send_raw(self, data: bytes) -> None:
        self.conn.writer.write(data)

    async def send(self, piece: bytes) -> None:
        conn = self.conn
        if self.fault and self.strike_at is None:
            self.strike_at = self.offset + conn.proxy.offset_for(self.fault, len(piece))
        if self.strike_at is not None and self.offset + len(piece) > self.strike_at:
            piece = await self.strike(piece, self.strike_at - self.offset)
        await conn.pace(len(piece))
        # counted before the write so that a client which has its bytes also sees them counted
        conn.proxy.count("response_body_bytes_total", len(piece))
        self.offset += len(piece)
        conn.writer.write(piece)
        await conn.io(conn.writer.drain())

    async def strike(self, piece: bytes, at: int) -> bytes:
        self.strike_at, self.fault, fault = None, None, self.fault
        if fault == "corrupt":
            self.conn.proxy.count("corruptions_total")
            flipped = bytearray(piece)  # the one copy, only in the one corrupted piece
            flipped[at] ^= 0xFF
            return bytes(flipped)
        # A graceful close after the partial body (not an RST, which may make the client's
        # kernel discard bytes it received but not yet read): the client always sees exactly
        # `at` more bytes and then end of stream, i.e. an incomplete read.
        self.conn.proxy.count("resets_total")
        self.conn.proxy.count("response_body_bytes_total", at)
        self.conn.writer.write(piece[:at])
        await _close(self.conn.writer)
        raise _Aborted
