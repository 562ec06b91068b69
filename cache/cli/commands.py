"""The CLI commands run in-process against the cache directory (the embedded default)."""

from __future__ import annotations

import argparse

from ..config import Config, format_size
from ..engine import Engine, EngineStats, PrefetchReport
from ..urls import parse_url
from .output import Output

EXIT_OK, EXIT_FAILED = 0, 1


async def run_in_process(args: argparse.Namespace, config: Config, out: Output) -> int:
    async with Engine(config) as engine:
        handler = _HANDLERS[args.command]
        return await handler(engine, args, out)


async def _prefetch(engine: Engine, args: argparse.Namespace, out: Output) -> int:
    ds = parse_url(args.url).as_dataset()
    with out.progress(str(ds)) as update:
        report = await engine.prefetch(
            ds,
            owner=args.owner,
            progress=update,
            shares=(getattr(args, "partition", None),),
            refresh=getattr(args, "refresh", False),
        )
    return report_prefetch(report, out, engine.stats())


def report_prefetch(report: PrefetchReport, out: Output, stats: EngineStats | None = None) -> int:
    """Print a prefetch's outcome; the engine's `stats` (retries, integrity failures…) go in
    JSON under `counters`."""
    if out.json_mode:
        out.json(
            {
                "counters": stats.as_json() if stats else {},
                "url": report.url,
                "local_dir": str(report.local_dir),
                "objects_total": report.objects_total,
                "bytes_total": report.bytes_total,
                "objects_downloaded": report.objects_downloaded,
                "bytes_downloaded": report.bytes_downloaded,
                "objects_already_local": report.objects_already_local,
                "refused": [{"key": r.key, "reason": r.reason} for r in report.refused],
                "failed": [
                    {"key": f.key, "kind": f.kind, "message": f.message} for f in report.failed
                ],
                "not_cached": report.not_cached,
                "seconds": round(report.seconds, 3),
                "listing_reused": report.listing_reused,
            }
        )
    else:
        rate = report.bytes_downloaded / report.seconds if report.seconds > 0 else 0.0
        out.info(
            f"{report.objects_total} objects ({format_size(report.bytes_total)}): "
            f"{report.objects_downloaded} downloaded ({format_size(report.bytes_downloaded)}"
            f" at {format_size(rate)}/s), {report.objects_already_local} already local, "
            f"in {report.seconds:.1f} s"
            + (" (the saved listing was reused; --refresh lists again)" * report.listing_reused)
        )
        for r in report.refused[:20]:
            out.warn(f"refused key {r.key!r}: {r.reason}")
        if report.not_cached:
            out.warn(
                f"{len(report.not_cached)} objects not cached: the byte budget is full "
                "of data in use; they are read from the store on demand"
            )
        for f in report.failed[:20]:
            out.error(f"{f.key}: {f.message}")
        if len(report.failed) > 20:
            out.error(f"... and {len(report.failed) - 20} more failed objects")
        out.line(str(report.local_dir))
    return EXIT_FAILED if report.failed else EXIT_OK


async def _path(engine: Engine, args: argparse.Namespace, out: Output) -> int:
    path = engine.local_path(parse_url(args.url))
    if out.json_mode:
        out.json({"url": args.url, "path": str(path), "exists": path.exists()})
    else:
        out.line(str(path))
    return EXIT_OK


async def _status(engine: Engine, args: argparse.Namespace, out: Output) -> int:
    if args.url:
        one = await engine.status(parse_url(args.url))
        rows = [] if one is None else [one]
    else:
        rows = await engine.statuses()
    usage = await engine.usage()
    if out.json_mode:
        out.json(
            {
                "datasets": [r.as_json() for r in rows],
                "cache_dir": str(engine.root),
                "published_bytes": usage.published,
                "max_bytes": engine.config.max_bytes,
                "disk_free_bytes": usage.disk_free,
            }
        )
        return EXIT_OK if rows or not args.url else EXIT_FAILED
    if args.url and not rows:
        out.error(
            f"{args.url} is not in the cache at {engine.root}; run `shardcache prefetch` first"
        )
        return EXIT_FAILED
    out.table(
        f"shardcache at {engine.root}  ({format_size(usage.published)} cached"
        + (f" of {format_size(engine.config.max_bytes)}" if engine.config.max_bytes else "")
        + ")",
        ["dataset", "state", "objects", "bytes", "local", "owners"],
        [
            [
                str(r.url),
                r.state.value,
                f"{r.objects_local}/{r.objects_total}",
                f"{format_size(r.bytes_local)}/{format_size(r.bytes_total)}",
                f"{100 * r.fraction_local:.1f}%",
                str(len(r.owners)),
            ]
            for r in rows
        ],
    )
    for r in rows:
        for err in r.errors[:5]:
            out.warn(f"{r.url}: {err.key}: {err.message}")
    return EXIT_OK


async def _verify(engine: Engine, args: argparse.Namespace, out: Output) -> int:
    report = await engine.verify(parse_url(args.url) if args.url else None)
    if out.json_mode:
        out.json(report.as_json())
    else:
        out.line(
            f"checked {report.checked} files: {report.ok} ok, {len(report.corrupt)} "
            f"damaged, {len(report.missing)} missing, {len(report.stray)} stray"
        )
        for name in report.corrupt:
            out.line(f"damaged (removed; the next prefetch fetches it again): {name}")
        for name in report.missing:
            out.line(f"missing (the next prefetch fetches it again): {name}")
        for name in report.stray:
            out.line(f"stray file not in the index (removed): {name}")
    return EXIT_OK if report.clean else EXIT_FAILED


async def _evict(engine: Engine, args: argparse.Namespace, out: Output) -> int:
    evicted = await engine.evict(parse_url(args.url), force=args.force)
    objects, nbytes = evicted.objects_removed, evicted.bytes_removed
    if out.json_mode:
        out.json({"url": args.url, "objects_removed": objects, "bytes_removed": nbytes})
    else:
        out.line(f"removed {objects} objects ({format_size(nbytes)}) of {args.url}")
    return EXIT_OK


_HANDLERS = {
    "prefetch": _prefetch,
    "path": _path,
    "status": _status,
    "verify": _verify,
    "evict": _evict,
}
