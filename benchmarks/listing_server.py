"""A moto S3 server holding a synthesized bucket of N keys, for R9 (run as its own process).

Uploading a million objects through HTTP would take most of an hour on this machine, so the
keys are put straight into moto's in-process backend of a `ThreadedMotoServer` in this same
process (a few seconds). Two things differ from a stock moto, both written down here:

- with `--fast-xml`, a page of the synthesized bucket is written by a string template rather
  than moto's model-driven serialiser (~100 ms of CPU per 1,000 keys on this machine, which
  caps any client at about 10-20 pages/s on 2 shared cores, where S3 serves far more): the
  same ListObjectsV2 XML, so the client's side is unchanged. Both modes are reported;
- the synthesized keys are light `FakeKey` subclasses carrying only what a listing returns
  (name, size, ETag, date, storage class): they hold no bytes, so GETs of them are not served;
- moto answers each ListObjectsV2 page by scanning and sorting every key of the bucket
  (O(N log N) per page, ~1,000 pages for 1M keys: hours), where S3 seeks in its index; for the
  synthesized bucket that scan is replaced by a bisect over the sorted names. Responses are
  still built and serialised by moto's own code, so the per-page cost of the emulator stays.

    python -m benchmarks.listing_server --keys 1000000   # prints one JSON line, then serves
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import sys
import time
from typing import Any

BUCKET = "shardcache-r9"
ACCOUNT = "123456789012"


def synth_keys(n: int, prefix: str = "ds/") -> list[str]:
    """Image-set-like keys: 1,000 per directory, sorted."""
    return [f"{prefix}{i // 1000:04d}/sample-{i:07d}.jpg" for i in range(n)]


def _install(backend: Any, bucket_name: str, names: list[str]) -> None:
    from moto.s3.models import FakeKey

    class ListedKey(FakeKey):  # type: ignore[misc]
        """What a listing shows of an object, and nothing else."""

        __module__ = "moto.s3.synthesized"  # moto's model registry keys on the service name

        last_modified_ISO8601 = "2026-11-30T00:00:00.000Z"
        storage_class = "STANDARD"
        checksum_algorithm = None
        size = 110_000

        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def etag(self) -> str:
            return '"' + hashlib.md5(self.name.encode()).hexdigest() + '"'

        def safe_name(self, encoding_type: str | None = None) -> str:
            return self.name

    tokens: dict[str, str] = {}
    plain = backend.list_objects_v2

    def list_objects_v2(
        bucket: Any,
        prefix: str | None,
        delimiter: str | None,
        continuation_token: str | None,
        start_after: str | None,
        max_keys: int,
    ) -> tuple[list[Any], bool, str | None]:
        if bucket.name != bucket_name:
            return plain(bucket, prefix, delimiter, continuation_token, start_after, max_keys)  # type: ignore[no-any-return]
        prefix = prefix or ""
        after = tokens.get(continuation_token or "") or start_after
        i = bisect.bisect_right(names, after) if after else 0
        i = max(i, bisect.bisect_left(names, prefix))
        out: list[Any] = []
        while i < len(names) and names[i].startswith(prefix) and len(out) <= max_keys:
            rest = names[i][len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter, 1)[0] + delimiter
                out.append(folder)
                i = bisect.bisect_left(names, folder[:-1] + chr(ord(delimiter) + 1))
            else:
                out.append(ListedKey(names[i]))
                i += 1
        truncated = len(out) > max_keys
        out = out[:max_keys]
        token = None
        if truncated:
            last = out[-1] if isinstance(out[-1], str) else out[-1].name
            token = hashlib.md5(last.encode()).hexdigest()
            tokens[token] = last
        return out, truncated, token

    backend.list_objects_v2 = list_objects_v2


def _install_fast_xml(bucket_name: str) -> None:
    from xml.sax.saxutils import escape

    from moto.s3.responses import S3Response

    plain = S3Response.list_objects_v2

    def list_objects_v2(self: Any) -> Any:
        if self.bucket_name != bucket_name:
            return plain(self)
        q = self.querystring
        prefix = q.get("prefix", [""])[0]
        delimiter = q.get("delimiter", [None])[0]
        max_keys = int(q.get("max-keys", ["1000"])[0])
        bucket = self.backend.get_bucket(bucket_name)
        out, truncated, token = self.backend.list_objects_v2(
            bucket,
            prefix,
            delimiter,
            q.get("continuation-token", [None])[0],
            q.get("start-after", [None])[0],
            max_keys,
        )
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
            'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{bucket_name}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(out)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>",
        ]
        if token:
            parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
        for k in out:
            if isinstance(k, str):
                parts.append(f"<CommonPrefixes><Prefix>{escape(k)}</Prefix></CommonPrefixes>")
            else:
                parts.append(
                    f"<Contents><Key>{escape(k.name)}</Key><LastModified>"
                    f"{k.last_modified_ISO8601}</LastModified><ETag>{escape(k.etag)}"
                    f"</ETag><Size>{k.size}</Size><StorageClass>STANDARD"
                    "</StorageClass></Contents>"
                )
        parts.append("</ListBucketResult>")
        return 200, {"Content-Type": "application/xml"}, "".join(parts)

    S3Response.list_objects_v2 = list_objects_v2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fast-xml", action="store_true", help="template-written list pages")
    a = p.parse_args()
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer
    from shardcache.testkit.emulators import free_port

    port = a.port or free_port()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    started = time.perf_counter()
    backend = s3_backends[ACCOUNT]["aws"]
    backend.create_bucket(BUCKET, "us-east-1")
    names = synth_keys(a.keys)
    _install(backend, BUCKET, names)
    if a.fast_xml:
        _install_fast_xml(BUCKET)
    print(
        json.dumps(
            {
                "url": f"http://127.0.0.1:{port}",
                "bucket": BUCKET,
                "keys": len(names),
                "synthesis_s": time.perf_counter() - started,
            }
        ),
        flush=True,
    )
    # serve until the parent closes our stdin
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
