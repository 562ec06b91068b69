"""The engine: lists datasets, downloads objects once, publishes verified files."""

from __future__ import annotations

from ..status import (
    DatasetState,
    DatasetStatus,
    EngineStats,
    Evicted,
    Failure,
    ManifestPage,
    Progress,
    VerifyReport,
)
from .engine import Engine
from .fetch import FetchResult
from .prefetch import PrefetchReport

__all__ = [
    "DatasetState", "DatasetStatus", "Engine", "EngineStats", "Evicted", "Failure",
    "FetchResult", "ManifestPage", "PrefetchReport", "Progress", "VerifyReport",
]
