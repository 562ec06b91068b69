"""`shardcache wait URL --fraction F --timeout S`: hold an init container until enough of a
dataset is local, then let the pod start.

Three ways to see progress, one meaning. Through the agent's socket (`--agent` /
SHARDCACHE_AGENT_SOCKET); through the status file the agent keeps in the dataset's directory
(`$SHARDCACHE_DATA_DIR/.shardcache/status.json`: the webhook's init container has the read-only
dataset mount and nothing else, so this mode opens no engine and touches no cache directory);
or in-process on the cache directory. In all three, `decide` says what an observation means:

- exit 0 when the fraction is local;
- exit 0 with a warning on timeout: the pod starts anyway and reads the rest from the store
  (that is what the timeout is for; `--output json` says `"reached": false`);
- exit 1 only when the dataset's state is `failed`; 2 for usage errors (main.py).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import NotFoundError
from ..keys import RESERVED_SEGMENT
from ..urls import parse_url
from .output import Output

EXIT_OK, EXIT_FAILED = 0, 1
#: how often progress is looked at; the agent rewrites the status file about once a second
POLL_S = 0.25
STATUS_FILE = os.path.join(RESERVED_SEGMENT, "status.json")
#: states in which a total of 0 bytes means "not listed yet" rather than "an empty dataset"
_SIZE_UNKNOWN = (None, "listing", "idle")


class Outcome(enum.Enum):
    WAIT = "wait"
    REACHED = "reached"
    TIMED_OUT = "timed_out"
    FAILED = "failed"


@dataclass(frozen=True)
class Observation:
    """What one look at the dataset's progress found."""

    state: str | None
    bytes_total: int
    bytes_local: int
    objects_total: int = 0
    objects_local: int = 0

    @property
    def fraction(self) -> float:
        if self.bytes_total > 0:
            return min(1.0, self.bytes_local / self.bytes_total)
        if self.state in _SIZE_UNKNOWN:
            return 0.0
        return 1.0 if self.objects_local >= self.objects_total else 0.0


def fraction_of(seen: Observation | None) -> float:
    return 0.0 if seen is None else seen.fraction


def decide(seen: Observation | None, wanted: float, timed_out: bool) -> Outcome:
    """`seen` is None while nothing is known (not registered, no status file yet).

    Reaching the fraction wins over a failure: the operator asked for that much, and it is
    there. A failure is reported at once rather than after the timeout, since waiting longer
    brings nothing (the agent does not retry on its own).
    """
    if fraction_of(seen) >= wanted:  # --fraction 0 needs nothing, not even a status
        return Outcome.REACHED
    if seen is not None and seen.state == "failed":
        return Outcome.FAILED
    return Outcome.TIMED_OUT if timed_out else Outcome.WAIT


def observation(doc: Mapping[str, Any]) -> Observation:
    """From an agent status document, a status file or an in-process status row."""
    return Observation(
        state=doc.get("state"),
        bytes_total=int(doc.get("bytes_total") or 0),
        bytes_local=int(doc.get("bytes_local") or 0),
        objects_total=int(doc.get("objects_total") or 0),
        objects_local=int(doc.get("objects_local") or 0),
    )


def parse_status_file(text: str, url: str) -> tuple[Observation | None, str | None]:
    """The observation in a status file's `text`, and why none could be taken from it.

    `url` is the normalised dataset URL. A file for another dataset is ignored (a mount of
    the wrong dataset must not start the pod early), reported in the warning at timeout.
    """
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        if doc.get("url") != url:
            return None, f"the status file describes {doc.get('url')!r}, not {url}"
        return observation(doc), None
    except (ValueError, TypeError) as e:  # half-written by a non-atomic writer, or damaged
        return None, f"the status file is unreadable ({e})"


def report(
    out: Output,
    url: str,
    wanted: float,
    timeout_s: float,
    outcome: Outcome,
    seen: Observation | None,
    note: str | None = None,
) -> int:
    """Print the outcome and return the exit status."""
    fraction = fraction_of(seen)
    if out.json_mode:
        out.json(
            {
                "url": url,
                "reached": outcome is Outcome.REACHED,
                "fraction_local": round(fraction, 6),
                "wanted": wanted,
                "state": seen.state if seen else None,
                "timed_out": outcome is Outcome.TIMED_OUT,
            }
        )
    if outcome is Outcome.FAILED:
        out.error(
            f"{url}: prefetch failed with {100 * fraction:.1f}% local, wanted "
            f"{100 * wanted:.1f}%; see `shardcache status` on the node"
        )
        return EXIT_FAILED
    if outcome is Outcome.TIMED_OUT:
        out.warn(
            f"{url}: {100 * fraction:.1f}% local after {timeout_s:g} s, wanted "
            f"{100 * wanted:.1f}%; starting anyway, the rest is read from the store"
            + (f" ({note})" if note else "")
        )
    else:
        out.info(f"{url}: {100 * fraction:.1f}% local")
    return EXIT_OK


def poll(
    look: Callable[[], tuple[Observation | None, str | None]],
    args: argparse.Namespace,
    out: Output,
    url: str,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Look until `decide` says stop; the blocking loop of the agent and status-file modes."""
    deadline = time.monotonic() + args.timeout
    while True:
        seen, note = look()
        outcome = decide(seen, args.fraction, time.monotonic() >= deadline)
        if outcome is not Outcome.WAIT:
            return report(out, url, args.fraction, args.timeout, outcome, seen, note)
        sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def dataset_url(args: argparse.Namespace) -> str:
    return str(parse_url(args.url).as_dataset())


def wait_on_status_file(args: argparse.Namespace, data_dir: str, out: Output) -> int:
    url = dataset_url(args)
    path = os.path.join(data_dir, STATUS_FILE)

    def look() -> tuple[Observation | None, str | None]:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(65536)
        except OSError:  # not there yet, or the mount is not ready: nothing known
            return None, f"no readable {path} yet"
        return parse_status_file(text, url)

    return poll(look, args, out, url)


def wait_with_agent(args: argparse.Namespace, socket_path: str, out: Output) -> int:
    from ..client.agent_client import AgentClient

    client = AgentClient(socket_path)
    url = dataset_url(args)

    def look() -> tuple[Observation | None, str | None]:
        try:
            return observation(client.status(url)), None
        except NotFoundError:  # the pod watcher may not have registered it yet
            return None, "the agent does not know the dataset yet"

    return poll(look, args, out, url)


async def wait_in_process(args: argparse.Namespace, config: Config, out: Output) -> int:
    """On the cache directory; with `--prefetch`, this process downloads meanwhile."""
    from ..engine import Engine
    from ..engine import maintenance as m

    url = dataset_url(args)
    deadline = time.monotonic() + args.timeout
    async with Engine(config) as engine:
        task = asyncio.create_task(engine.prefetch(url)) if args.prefetch else None
        try:
            while True:
                rows = await engine.db(m.statuses, engine, url)
                seen = observation(rows[0].as_json()) if rows else None
                if task is not None and task.done():
                    task.result()  # a crash of the prefetch itself is an error, not a wait
                    task = None
                    continue
                outcome = decide(seen, args.fraction, time.monotonic() >= deadline)
                if outcome is not Outcome.WAIT:
                    return report(out, url, args.fraction, args.timeout, outcome, seen)
                await asyncio.sleep(POLL_S)
        finally:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
