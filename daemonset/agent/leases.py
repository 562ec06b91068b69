"""Leases: a pin whose owner is not a pod lasts only while its owner lives.

Pods' pins are kept true by the pod watcher (a pod that ends or vanishes is released). A CLI or
a Python client pins for itself (`cli-<pid>`, `client-...`), and when it is killed nobody
releases: before leases, such a pin kept its dataset unevictable forever. Now every pin whose
owner is not a pod UID holds a lease:

* registering grants it for `ttl_s`, and registering again (same URL and owner) renews it;
* while the registering process is alive — the agent saw its pid through `SO_PEERCRED` and
  checks `/proc/PID` with the process's start time, so a reused pid does not count — the agent
  renews it by itself, so a long `shardcache prefetch` needs no heartbeat;
* once it has expired, the pin is released (the data stays cached, evictable);
* `durable` leases (the CLI's explicit `--owner NAME`: "pinned until released") never expire.

The book is written to a small JSON file next to the cache, so that after an agent restart
pins left by processes that died meanwhile are reclaimed too: a pin with no lease on record
gets a fresh one that nobody renews. Decisions here are pure; `LeaseBook` holds the state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .desired import is_pod_uid

#: a killed CLI's pin is reclaimed within this (plus one sweep); long enough that a client
#: renewing by re-registering every TTL/3 survives a slow agent
DEFAULT_TTL_S = 120.0
#: how often the agent renews leases of live processes and reclaims expired ones
SWEEP_INTERVAL_S = 15.0

#: (pid, start time in clock ticks since boot), or None when the caller's pid is not visible
ProcessId = tuple[int, int] | None


@dataclass(frozen=True)
class Lease:
    url: str
    owner: str
    expires_at: float
    process: ProcessId = None
    durable: bool = False


def needs_lease(owner: str) -> bool:
    """Pods' pins follow the pod watcher; every other owner's pin is leased."""
    return not is_pod_uid(owner)


def grant(
    url: str, owner: str, now: float, ttl_s: float, process: ProcessId, durable: bool
) -> Lease:
    return Lease(url, owner, now + ttl_s, process, durable)


def renew(lease: Lease, now: float, ttl_s: float) -> Lease:
    return replace(lease, expires_at=max(lease.expires_at, now + ttl_s))


def sweep(
    leases: Iterable[Lease], now: float, ttl_s: float, alive: Callable[[ProcessId], bool]
) -> tuple[list[Lease], list[Lease]]:
    """(leases to keep, renewed where their process lives; leases that expired)."""
    keep: list[Lease] = []
    expired: list[Lease] = []
    for lease in leases:
        if lease.durable:
            keep.append(lease)
        elif lease.process is not None and alive(lease.process):
            keep.append(renew(lease, now, ttl_s))
        elif lease.expires_at <= now:
            expired.append(lease)
        else:
            keep.append(lease)
    return keep, expired


def adopt(
    pins: Iterable[tuple[str, str]], known: Iterable[Lease], now: float, ttl_s: float
) -> list[Lease]:
    """After a restart: the leases on record for pins that still exist, and a fresh lease
    (no process to renew it) for every leased pin that has none."""
    by_key = {(lease.url, lease.owner): lease for lease in known}
    out: list[Lease] = []
    for url, owner in pins:
        if needs_lease(owner):
            out.append(by_key.get((url, owner)) or grant(url, owner, now, ttl_s, None, False))
    return out


def process_id(pid: int, proc: Path = Path("/proc")) -> ProcessId:
    """The identity of a live process: its pid and start time; None if it is not visible."""
    if pid <= 0:
        return None
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    return (pid, int(fields[19]))  # field 22: starttime


def is_alive(process: ProcessId, proc: Path = Path("/proc")) -> bool:
    return process is not None and process_id(process[0], proc) == process


class LeaseBook:
    """The leases in force, persisted to `path` (JSON) on every change."""

    def __init__(self, path: Path, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.leases: dict[tuple[str, str], Lease] = {}

    def load(self) -> list[Lease]:
        """The leases on record (none if the file is missing or unreadable)."""
        try:
            doc = json.loads(self.path.read_text())
            return [
                Lease(
                    str(d["url"]),
                    str(d["owner"]),
                    float(d["expires_at"]),
                    tuple(d["process"]) if d.get("process") else None,  # type: ignore[arg-type]
                    bool(d.get("durable", False)),
                )
                for d in doc["leases"]
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def replace_all(self, leases: Iterable[Lease]) -> None:
        self.leases = {(lease.url, lease.owner): lease for lease in leases}
        self._save()

    def put(self, lease: Lease) -> None:
        self.leases[(lease.url, lease.owner)] = lease
        self._save()

    def drop(self, url: str, owner: str) -> None:
        if self.leases.pop((url, owner), None) is not None:
            self._save()

    def _save(self) -> None:
        doc = {"leases": [asdict(lease) for lease in self.leases.values()]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)
