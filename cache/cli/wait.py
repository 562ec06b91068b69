"""`shardcache wait URL --fraction F --timeout S`: hold an init container until enough of a
dataset is local, then let the pod start.

Three ways to see progress, one meaning. Through the agent's socket (`--agent` /
SHARDCACHE_AGENT_SOCKET); through the status file the agent keeps for the dataset
(`$SHARDCACHE_STATUS_DIR/status.json`: the webhook's init container has that one read-only
directory, a `view: status` volume, and nothing else, so this mode opens no engine and touches
no cache directory); or in-process on the cache directory. In all three, `waitloop.decide`
says what a status means and `waitloop.poll` is the loop:

- exit 0 when the fraction is local;
- exit 0 with a warning on timeout: the pod starts anyway (that is what the timeout is for;
  `--output json` says `"reached": false`); a read-through view fetches each missing object
  when it is opened, a `view: bind` volume shows only the files already local;
- exit 1 only when the dataset's state is `failed`; 2 for usage errors (main.py).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import replace

from ..config import Config
from ..errors import NotFoundError
from ..partition import Partition
from ..status import DatasetStatus
from ..store.statusfile import STATUS_NAME, parse_status_file
from ..urls import StoreURL, parse_url
from ..waitloop import Decision, Look, poll
from .output import Output

EXIT_OK, EXIT_FAILED = 0, 1
#: how often progress is looked at; the agent rewrites the status file about once a second
POLL_S = 0.25
#: the decisions that end `shardcache wait`: a settled dataset short of the fraction is waited
#: for until the timeout (the pod watcher may register it again meanwhile)
_ENDS = frozenset({Decision.REACHED, Decision.FAILED})


def report(
    out: Output, ds: StoreURL, wanted: float, timeout_s: float, decision: Decision, seen: Look
) -> int:
    """Print the outcome and return the exit status."""
    status = seen.status
    fraction = status.fraction_local if status is not None else 0.0
    if out.json_mode:
        out.json(
            {
                "url": str(ds),
                "reached": decision is Decision.REACHED,
                "fraction_local": round(fraction, 6),
                "wanted": wanted,
                "state": status.state.value if status else None,
                "timed_out": decision is Decision.TIMED_OUT,
            }
        )
    if decision is Decision.FAILED:
        out.error(
            f"{ds}: prefetch failed with {100 * fraction:.1f}% local, wanted "
            f"{100 * wanted:.1f}%; see `shardcache status` on the node"
        )
        return EXIT_FAILED
    if decision is Decision.TIMED_OUT:
        out.warn(
            f"{ds}: {100 * fraction:.1f}% local after {timeout_s:g} s, wanted "
            f"{100 * wanted:.1f}%; starting anyway: a read-through view fetches each missing "
            "object when it is opened, a `view: bind` volume shows only the files already local"
            + (f" ({seen.note})" if seen.note else "")
        )
    else:
        out.info(f"{ds}: {100 * fraction:.1f}% local")
    return EXIT_OK


def of_share(look: Callable[[], Look], share: Partition | None) -> Callable[[], Look]:
    """With `--partition`, every look is of that member's share (`DatasetStatus.for_share`):
    the fraction, and so the decision, are the share's."""
    if share is None:
        return look

    def looked() -> Look:
        seen = look()
        if seen.status is None:
            return seen
        mine = seen.status.for_share(share)
        return Look(mine, seen.note if mine else f"no share {share} registered yet")

    return looked


def _run(look: Callable[[], Look], args: argparse.Namespace, out: Output, ds: StoreURL) -> int:
    look = of_share(look, getattr(args, "partition", None))
    decision, seen = poll(look, args.fraction, args.timeout, interval_s=POLL_S, ends=_ENDS)
    return report(out, ds, args.fraction, args.timeout, decision, seen)


def wait_on_status_file(args: argparse.Namespace, status_dir: str, out: Output) -> int:
    ds = parse_url(args.url).as_dataset()
    path = os.path.join(status_dir, STATUS_NAME)

    def look() -> Look:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(65536)
        except OSError:  # not there yet, or the mount is not ready: nothing known
            return Look(None, f"no readable {path} yet")
        return Look(*parse_status_file(text, ds))

    return _run(look, args, out, ds)


def wait_with_agent(args: argparse.Namespace, socket_path: str, out: Output) -> int:
    from ..client.agent_client import AgentClient

    client = AgentClient(socket_path)
    ds = parse_url(args.url).as_dataset()

    def look() -> Look:
        try:
            return Look(client.status(str(ds)))
        except NotFoundError:  # the pod watcher may not have registered it yet
            return Look(None, "the agent does not know the dataset yet")

    return _run(look, args, out, ds)


def wait_in_process(args: argparse.Namespace, config: Config, out: Output) -> int:
    """On the cache directory; with `--prefetch`, this process downloads meanwhile (main.py
    turns SIGTERM into an exception, so leaving the `with` cancels it cleanly)."""
    from ..client.facades import InProcessEngine

    ds = parse_url(args.url).as_dataset()
    with InProcessEngine(config) as engine:
        share = getattr(args, "partition", None)
        if args.prefetch:
            engine.start_prefetch(ds, share)

        def look() -> Look:
            status: DatasetStatus | None = engine.status(ds)
            if status is not None and share is not None:  # no agent keeps shares here
                status = replace(status, shares=(engine.share_status(ds, share),))
            return Look(status)

        return _run(look, args, out, ds)
