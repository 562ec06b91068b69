"""Pure listing decisions: what `ls`, `info` and `find` answer, given the objects under a
prefix. Object stores have no directories; like s3fs, a directory is any prefix that ends at
a `/` inside some key, and it is reported with size 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One object: its full key in the bucket and its size."""

    key: str
    size: int


def as_prefix(key: str) -> str:
    """`a/b` -> `a/b/`; "" stays "" (the bucket root)."""
    key = key.strip("/")
    return key + "/" if key else ""


def file_info(bucket: str, entry: Entry) -> dict[str, Any]:
    return {"name": f"{bucket}/{entry.key}", "size": entry.size, "type": "file"}


def dir_info(bucket: str, key: str) -> dict[str, Any]:
    return {"name": f"{bucket}/{key.strip('/')}".rstrip("/"), "size": 0, "type": "directory"}


def children(bucket: str, prefix: str, entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Direct children of `prefix` (which is "" or ends in "/"), directories synthesised,
    sorted by name."""
    files: list[dict[str, Any]] = []
    dirs: set[str] = set()
    for e in entries:
        if not e.key.startswith(prefix) or e.key == prefix:
            continue
        rest = e.key[len(prefix) :]
        head, sep, _ = rest.partition("/")
        if sep:
            dirs.add(prefix + head)
        else:
            files.append(file_info(bucket, e))
    out = files + [dir_info(bucket, d) for d in dirs]
    return sorted(out, key=lambda i: str(i["name"]))


def under(prefix: str, entries: Iterable[Entry]) -> list[Entry]:
    """Every object below `prefix`, recursively, in key order."""
    return sorted(
        (e for e in entries if e.key.startswith(prefix) and e.key != prefix), key=lambda e: e.key
    )


def find_infos(
    bucket: str, prefix: str, entries: Iterable[Entry], withdirs: bool
) -> dict[str, dict[str, Any]]:
    """What `find` answers: name -> info of each file (and each directory with `withdirs`)."""
    found = under(prefix, entries)
    out = {f"{bucket}/{e.key}": file_info(bucket, e) for e in found}
    if withdirs:
        for e in found:
            parts = e.key[len(prefix) :].split("/")[:-1]
            for i in range(1, len(parts) + 1):
                info = dir_info(bucket, prefix + "/".join(parts[:i]))
                out.setdefault(str(info["name"]), info)
    return dict(sorted(out.items()))
