"""Who a process is: a pid plus its start time, which names one process even after the pid is
reused. Reservations in the index carry it, so that start-up can tell a live process's
reservation from one a dead process left behind.
"""

from __future__ import annotations

import os


def process_start_ticks(pid: int) -> int:
    """Start time of `pid` in clock ticks since boot (0 if unknown): pid + start time names a
    process uniquely even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def process_alive(pid: int, start_ticks: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start_ticks == 0 or process_start_ticks(pid) in (0, start_ticks)
