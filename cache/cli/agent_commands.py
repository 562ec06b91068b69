"""The CLI commands run through the node agent (`--agent SOCKET` / SHARDCACHE_AGENT_SOCKET).

The agent owns the node's cache, so these commands never open the cache directory: prefetch
registers the dataset (pinning it for an owner), follows its status until the prefetch ends,
and releases the pin unless `--owner` was given; verify and evict run inside the agent, on its
cache. Same output and exit codes as the in-process commands.
"""

from __future__ import annotations

import argparse
import os
import time

from ..client.agent_client import AgentClient
from ..config import format_size
from ..status import DatasetState, DatasetStatus, Progress, ViewCounts
from ..urls import parse_url
from .output import Output

EXIT_OK, EXIT_FAILED = 0, 1
#: how often status is polled; the agent answers from memory and the index, so 4/s is cheap
POLL_S = 0.25


def run_with_agent(args: argparse.Namespace, socket_path: str, out: Output) -> int:
    client = AgentClient(socket_path)
    handler = _HANDLERS.get(args.command)
    if handler is None:
        out.error(f"`shardcache {args.command}` does not run through the agent")
        return 2
    return handler(client, args, out)


def _prefetch(client: AgentClient, args: argparse.Namespace, out: Output) -> int:
    url = str(parse_url(args.url).as_dataset())
    owner = args.owner or f"cli-{os.getpid()}"
    share = getattr(args, "partition", None)
    # an explicit --owner pins until released; cli-PID's lease ends soon after this process
    status = client.register(
        url,
        owner,
        durable=bool(args.owner),
        partition=str(share) if share else None,
        refresh=getattr(args, "refresh", False),
    )
    try:
        with out.progress(url) as update:
            while not status.state.settled:
                update(_progress(status))
                time.sleep(POLL_S)
                status = client.status(url)
            update(_progress(status))
    finally:
        if not args.owner:
            client.release(url, owner)
    return _report(status, out)


def _progress(status: DatasetStatus) -> Progress:
    return Progress(
        str(status.url),
        status.objects_total,
        status.bytes_total,
        objects_done=status.objects_local,
        bytes_done=status.bytes_local,
    )


def _report(status: DatasetStatus, out: Output) -> int:
    failed = status.state is DatasetState.FAILED
    if out.json_mode:
        out.json(dict(status.as_json(listed_at=False)))
    else:
        out.info(
            f"{status.objects_local}/{status.objects_total} objects "
            f"({format_size(status.bytes_local)} of {format_size(status.bytes_total)}) "
            f"local: {status.state.value}"
        )
        for err in status.errors[:20]:
            (out.error if failed else out.warn)(f"{err.key or status.url}: {err.message}")
        out.line(str(status.local_dir))
    return EXIT_FAILED if failed else EXIT_OK


def _path(client: AgentClient, args: argparse.Namespace, out: Output) -> int:
    path = client.path(args.url)
    if out.json_mode:
        out.json({"url": args.url, "path": path, "exists": os.path.exists(path)})
    else:
        out.line(path)
    return EXIT_OK


def _status(client: AgentClient, args: argparse.Namespace, out: Output) -> int:
    rows = [client.status(args.url)] if args.url else client.datasets()
    if out.json_mode:
        out.json(
            {"datasets": [r.as_json(listed_at=False) for r in rows], "agent": client.socket_path}
        )
        return EXIT_OK
    out.table(
        f"shardcache agent at {client.socket_path}",
        ["dataset", "state", "objects", "bytes", "local", "rate", "eta", "owners", "view hits"],
        [
            line
            for r in rows
            for line in [
                [
                    str(r.url),
                    r.state.value,
                    f"{r.objects_local}/{r.objects_total}",
                    f"{format_size(r.bytes_local)}/{format_size(r.bytes_total)}",
                    f"{100 * r.fraction_local:.1f}%",
                    f"{format_size(r.rate_bytes_per_s)}/s",
                    "-" if r.eta_s is None else f"{r.eta_s:.0f} s",
                    str(len(r.owners)),
                    _view_hits(r.view),
                ],
                *_share_rows(r),
            ]
        ],
    )
    for r in rows:
        for err in r.errors[:5]:
            out.warn(f"{r.url}: {err.key}: {err.message}")
        for err in r.open_failures[-5:]:
            out.warn(
                f"{r.url}: open of {err.key} through the view failed ({err.kind}): {err.message}"
            )
    return EXIT_OK


def _view_hits(counts: ViewCounts | None) -> str:
    """Opens through the read-through view that found the file local, of all opens."""
    if counts is None:
        return "-"
    share = f" ({100 * counts.hit_opens / counts.opens:.0f}%)" if counts.opens else ""
    return f"{counts.hit_opens}/{counts.opens}{share}"


def _share_rows(status: DatasetStatus) -> list[list[str]]:
    """One row under the dataset's for each share registered with a partition."""
    return [
        [
            f"  share {s.partition}",
            "",
            f"{s.objects_local}/{s.objects_total}",
            f"{format_size(s.bytes_local)}/{format_size(s.bytes_total)}",
            f"{100 * s.fraction_local:.1f}%",
            "",
            "",
            "",
            "",
        ]
        for s in status.shares
    ]


def _verify(client: AgentClient, args: argparse.Namespace, out: Output) -> int:
    report = client.verify(args.url)
    if out.json_mode:
        out.json(report.as_json())
    else:
        out.line(
            f"checked {report.checked} files in the agent's cache: {report.ok} ok, "
            f"{len(report.corrupt)} damaged, {len(report.missing)} missing, "
            f"{len(report.stray)} stray"
        )
        for name in report.corrupt:
            out.line(f"damaged (removed; the next prefetch fetches it again): {name}")
        for name in report.missing:
            out.line(f"missing (the next prefetch fetches it again): {name}")
        for name in report.stray:
            out.line(f"stray file not in the index (removed): {name}")
    return EXIT_OK if report.clean else EXIT_FAILED


def _evict(client: AgentClient, args: argparse.Namespace, out: Output) -> int:
    evicted = client.evict(args.url, args.force)
    if out.json_mode:
        out.json(evicted.as_json())
    else:
        out.line(
            f"removed {evicted.objects_removed} objects "
            f"({format_size(evicted.bytes_removed)}) of {evicted.url}"
        )
    return EXIT_OK


_HANDLERS = {
    "prefetch": _prefetch,
    "path": _path,
    "status": _status,
    "verify": _verify,
    "evict": _evict,
}
