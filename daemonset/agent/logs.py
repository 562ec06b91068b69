"""One JSON object per log line, with every message passed through `redact`.

Log collectors on a node (fluent-bit, Vector, Loki's promtail) parse JSON lines without a
custom pattern; `event` names what happened and the other keys say to what. Error text from
cloud SDKs can carry signatures or keys, so the formatter redacts the whole line, not just the
message, as a last line of defence behind the callers' own `redact`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from shardcache.errors import redact


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            doc["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return str(redact(json.dumps(doc, default=str, ensure_ascii=False)))


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # the kubernetes client logs every request at DEBUG and urllib3 warns on retries; neither
    # belongs in the agent's log at INFO
    for noisy in ("kubernetes", "urllib3", "aiohttp.access", "botocore", "s3fs"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def kv(**fields: Any) -> dict[str, Any]:
    """`log.info("event", extra=kv(url=..., owner=...))`."""
    return {"fields": fields}
