"""Run gcp-storage-emulator in memory with a listen backlog that survives concurrency.

The emulator serves with `http.server.HTTPServer`, whose listen backlog is 5: a client that
opens a few dozen connections at once (gcsfs, the prefetcher) gets connection resets. The
server also handles one request at a time; we keep that (its storage is not written with
concurrent requests in mind) and only let waiting connections queue instead of failing.

Usage: ``python tests/gcs_launcher.py --host 127.0.0.1 --port P``
"""

from __future__ import annotations

import argparse
import http.server
import logging
import types

#: connections that may wait while the emulator serves one request; far above any client's
#: pool size used in tests, demos and benchmarks
LISTEN_BACKLOG = 1024


class _DeepBacklogHTTPServer(http.server.HTTPServer):
    request_queue_size = LISTEN_BACKLOG


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from gcp_storage_emulator import server as emulator_server

    # The emulator looks up `server.HTTPServer` (the stdlib module) when its thread starts;
    # replace only that name, for this process only.
    emulator_server.server = types.SimpleNamespace(  # type: ignore[attr-defined]
        HTTPServer=_DeepBacklogHTTPServer,
        BaseHTTPRequestHandler=http.server.BaseHTTPRequestHandler,
    )
    emulator_server.create_server(args.host, args.port, in_memory=True).run()


if __name__ == "__main__":
    main()
