"""Session-wide fixtures: real object-store emulators on loopback ports.

Each emulator starts lazily, the first time a test asks for it, and once per session; each test
gets its own fresh bucket and its own copy of the SDK environment variables (through
monkeypatch, so nothing leaks into the next test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulators import AzuriteServer, GcsEmulator
from shardcache.testkit.emulators import Bucket, EmulatorProcess, MotoS3Server

#: variables that would point a client somewhere other than the emulator under test
_FOREIGN_ENV = [
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
]


def use_emulator_env(monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess) -> None:
    """Point the SDKs at `server` for the current test only."""
    for name in _FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsEmulator]:
    with GcsEmulator() as server:
        yield server


@pytest.fixture(scope="session")
def azure_server() -> Iterator[AzuriteServer]:
    with AzuriteServer() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh S3 bucket on moto, with AWS_* variables set for this test."""
    use_emulator_env(monkeypatch, s3_server)
    return s3_server.new_bucket()


@pytest.fixture
def gcs_bucket(gcs_server: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh GCS bucket on gcp-storage-emulator, with STORAGE_EMULATOR_HOST set."""
    use_emulator_env(monkeypatch, gcs_server)
    return gcs_server.new_bucket()


@pytest.fixture
def azure_container(azure_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh Azure container on Azurite, with AZURE_STORAGE_CONNECTION_STRING set."""
    use_emulator_env(monkeypatch, azure_server)
    return azure_server.new_bucket()
