"""Plumbing shared by the adapter's backends: a bound on every call, one translation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from ...config import Config
from ...errors import IntegrityError
from ...urls import StoreURL
from ..base import Checksum, ObjectInfo
from ..memory import check_range
from .error_table import translate

#: the buffer type a read returns, kept as it was given
_D = TypeVar("_D", bound=bytes | memoryview)


class Guarded:
    """Shared plumbing: a bound on every call and the translation of whatever escapes."""

    scheme = ""

    def __init__(self, bucket: str, config: Config) -> None:
        self.bucket = bucket
        self.config = config

    def where(self, key: str = "") -> str:
        return str(StoreURL(self.scheme, self.bucket, key))

    @contextlib.asynccontextmanager
    async def guard(self, key: str = "") -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.config.connect_timeout_s + self.config.read_timeout_s):
                yield
        except Exception as e:
            err = translate(e, self.where(key), self.scheme)
            if err is None or err is e:
                raise
            raise err from e

    def checked(self, info: ObjectInfo, start: int, data: _D, end: int) -> _D:
        if len(data) != end - start:
            raise IntegrityError(
                f"{self.where(info.key)}: asked for bytes [{start}, {end}) of version "
                f"{info.version}, got {len(data)} bytes; the object may have been truncated"
            )
        return data


def clip(info: ObjectInfo, start: int, end: int) -> int:
    check_range(start, end)
    return min(end, info.size)


def is_placeholder(key: str, size: int) -> bool:
    """Zero-byte `dir/` keys that consoles create to show folders; never data."""
    return key.endswith("/") and size == 0


def md5_hex_from_b64(value: str | None) -> Checksum | None:
    return Checksum("md5", base64.b64decode(value).hex()) if value else None
