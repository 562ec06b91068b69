"""The engine: lists datasets, downloads objects once, publishes verified files.

`Engine` is the way in; `with_retries` (one store request under the request budget of a
`Retry` value) is shared with the client's direct, uncached reads so that both retry alike."""

from __future__ import annotations

from ..reports import EngineStats, Evicted, ManifestPage, VerifyReport
from ..status import DatasetState, DatasetStatus, Failure, Progress, ShareStatus
from .download import with_retries
from .engine import Engine
from .fetch import FetchResult
from .prefetch import PrefetchReport

__all__ = [
    "DatasetState",
    "DatasetStatus",
    "Engine",
    "EngineStats",
    "Evicted",
    "Failure",
    "FetchResult",
    "ManifestPage",
    "PrefetchReport",
    "Progress",
    "ShareStatus",
    "VerifyReport",
    "with_retries",
]
