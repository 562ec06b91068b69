"""The engine: lists datasets, downloads objects once, publishes verified files."""

from __future__ import annotations

from .engine import Engine, FetchResult, PrefetchReport, Progress

__all__ = ["Engine", "FetchResult", "PrefetchReport", "Progress"]
