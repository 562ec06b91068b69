"""Mapping object keys to relative paths: pure, total, and never outside the dataset.

An object key is any string the store allows; a local path is not. A key maps to a path only
when every `/`-separated segment is a plain name: not empty, not `.` or `..`, no NUL, at most
255 bytes of UTF-8, and the whole path at most 4000 bytes (PATH_MAX less the cache root). Any
other key is refused, never rewritten: a rewritten key could collide with a real one, and a
reader would not find the file under the name they know.

No name is reserved: shardcache keeps nothing of its own inside a dataset's directory (the
agent's progress for pods lives in CACHE/status/, see store/layout.py), so a key such as
`.shardcache/x` is an object like any other.

Directory markers (keys ending in `/`, as consoles create for "folders") are not objects and
are skipped. Two keys collide when one would have to be both a file and a directory
(`a` and `a/b`); both are refused, because choosing one would depend on listing order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4000


@dataclass(frozen=True)
class KeyRefusal:
    key: str
    reason: str


def is_directory_marker(key: str) -> bool:
    return key.endswith("/")


def check_key(key: str) -> str | None:
    """Return why `key` cannot be a relative path, or None when it can (as itself)."""
    if not key:
        return "empty key"
    if "\x00" in key:
        return "contains a NUL byte"
    if key.startswith("/"):
        return "absolute path"
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 (lone surrogate)"
    if len(encoded) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes"
    for segment in key.split("/"):
        if segment == "":
            return "empty path segment (`//` or trailing `/`)"
        if segment in (".", ".."):
            return f"`{segment}` path segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def plan_paths(keys: Iterable[str]) -> tuple[list[str], list[KeyRefusal]]:
    """Split `keys` into those that map safely and the refusals, collisions included.

    The accepted keys map to themselves as relative paths; no two of them collide.
    """
    accepted: list[str] = []
    refused: list[KeyRefusal] = []
    for key in keys:
        if is_directory_marker(key):
            continue
        reason = check_key(key)
        if reason is None:
            accepted.append(key)
        else:
            refused.append(KeyRefusal(key, reason))
    files = set(accepted)
    clashing: set[str] = set()
    for key in accepted:
        parts = key.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                clashing.update((parent, key))
    if clashing:
        refused.extend(
            KeyRefusal(k, "collides with another key (one would be both a file and a directory)")
            for k in sorted(clashing)
        )
        accepted = [k for k in accepted if k not in clashing]
    return accepted, refused
