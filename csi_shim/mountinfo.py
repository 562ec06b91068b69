"""Reading /proc/self/mountinfo: which mounts exist and with which per-mount options.

Parsing is pure (text in, entries out) and tested on fixed strings; `read_mountinfo()` is the
one function that reads the file. mountinfo rather than /proc/mounts, because it separates
the per-mount options (`ro,nosuid,nodev`, which a bind remount changes) from the file
system's super-block options (which it does not), and it names the mount's root inside its
file system, which tells a bind mount from a whole-file-system mount.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    #: the directory of the mounted file system that appears at `mount_point`
    root: str
    mount_point: str
    #: per-mount options, e.g. {"ro", "nosuid", "nodev", "relatime"}
    options: frozenset[str]
    fs_type: str
    source: str


def unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in paths as `\\040`-style octal."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_line(line: str) -> MountEntry:
    fields = line.split(" ")
    sep = fields.index("-", 6)  # optional fields (shared:N, master:N) sit before "-"
    return MountEntry(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=frozenset(fields[5].split(",")),
        fs_type=fields[sep + 1],
        source=unescape(fields[sep + 2]),
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    return [parse_line(line) for line in text.splitlines() if line.strip()]


def mount_at(entries: Iterable[MountEntry], path: str) -> MountEntry | None:
    """The mount visible at `path`: the last one listed there (later mounts stack on top)."""
    found = None
    for entry in entries:
        if entry.mount_point == path:
            found = entry
    return found


def read_mountinfo(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())
