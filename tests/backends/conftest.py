"""Fixtures for the backend conformance suite: one `Store` per backend under test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_stores import ADAPTER_STORES, ALL_STORES, Store, make_store


@pytest.fixture(params=ALL_STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request, tmp_path)


@pytest.fixture(params=ADAPTER_STORES)
def adapter_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request, tmp_path)
