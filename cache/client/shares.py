"""Reading the same share in training code that the node prefetched for this pod.

The split itself lives in `shardcache.partition` (one rule for the agent, the CLI and the
client); this module gives a training script the two things it needs around it: the share of
the files under a mounted dataset, and the pod's own partition as the webhook wrote it into
the environment (`SHARDCACHE_PARTITION=I/N`, resolved from `index/N` for Indexed Jobs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..partition import ENV_PARTITION, Partition, parse_optional, partition

__all__ = ["ENV_PARTITION", "Partition", "list_share", "partition", "partition_from_env"]


def partition_from_env(env: Mapping[str, str] | None = None) -> Partition | None:
    """This pod's partition (`SHARDCACHE_PARTITION`), or None when it reads everything."""
    environ = os.environ if env is None else env
    return parse_optional(environ.get(ENV_PARTITION, "").strip())


def list_share(directory: str | os.PathLike[str], i: int, n: int) -> list[str]:
    """Relative paths of member `i` of `n`'s files under a dataset directory, sorted.

    Walks the directory (the read-through view lists every object of the dataset from the
    start, so the result does not depend on what is local yet; a `bind` view lists only
    complete files, so call this after the dataset is local).
    """
    root = Path(directory)
    found = []
    for here, _dirs, names in os.walk(root):
        rel = Path(here).relative_to(root)
        found += [(rel / name).as_posix() for name in names]
    return partition(found, i, n)
