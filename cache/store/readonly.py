"""Read-only look-ups in the cache index for readers that hold no engine: the manifest of a
dataset the cache already knows (the client's listings). Here, beside the index, because only
the store knows the index's schema.

Listing a known dataset from its manifest costs no request to the store and works while the
agent is down (the cache directory is readable; the agent's socket may not answer). The index
is opened read-only for one query and closed again, so no SQLite connection ever crosses a
`fork`. Any SQLite trouble (no index yet, a read-only mount without the WAL files, a locked
database) means "not known here": the caller lists remotely.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_COVERING = "SELECT url, prefix FROM datasets WHERE store=? AND listed_at IS NOT NULL"
_ROWS = "SELECT key, size FROM manifest WHERE url=? AND key>=? AND key<? ORDER BY key"


def covering(datasets: list[tuple[str, str]], start: str) -> str | None:
    """The known dataset whose prefix is the longest prefix of `start` (pure)."""
    best = [(len(p), u) for u, p in datasets if start.startswith(p)]
    return max(best)[1] if best else None


def known_entries(index_path: Path, store: str, start: str) -> list[tuple[str, int]] | None:
    """Objects whose key starts with `start`, from a dataset manifest covering `start`;
    None when no listed dataset covers it (or the index cannot be read)."""
    if not index_path.is_file():
        return None
    try:
        db = sqlite3.connect(index_path.as_uri() + "?mode=ro", uri=True, timeout=5.0)
        try:
            url = covering(db.execute(_COVERING, (store,)).fetchall(), start)
            if url is None:
                return None
            rows = db.execute(_ROWS, (url, start, start + "\U0010ffff")).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return [(str(k), int(s)) for k, s in rows]
