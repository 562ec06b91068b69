"""The GCS and Azure emulators the tests start (S3's moto lives in `shardcache.testkit`,
because `shardcache demo` and the benchmarks use it too).

gcp-storage-emulator runs through `gcs_launcher.py` next to this file; Azurite comes from the
repository's node_modules (scripts/install-test-deps.sh). Both follow the lifecycle of
`shardcache.testkit.emulators.EmulatorProcess`. Nothing runs at import time.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shardcache.testkit.emulators import EmulatorProcess, parallel

#: Azurite's well-known development account; public test data, documented by Microsoft
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: where `npm install` (scripts/install-test-deps.sh) puts Azurite: the repository root
_REPO_ROOT = Path(__file__).resolve().parents[1]


class GcsEmulator(EmulatorProcess):
    """gcp-storage-emulator, in memory, through our deep-backlog launcher.

    Known gaps against real GCS (seen with gcp-storage-emulator 2026.7): no suffix ranges
    (`bytes=-N`), and media downloads ignore `generation` and `ifGenerationMatch`.
    """

    name = "gcp-storage-emulator"
    scheme = "gs"

    def command(self, port: int) -> list[str]:
        return [
            sys.executable,
            str(Path(__file__).with_name("gcs_launcher.py")),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    def env(self) -> dict[str, str]:
        # gcsfs stalls ~60 s per bucket probing its experimental zonal/HNS features unless
        # this is false before it is imported (the backend adapter also sets it by default)
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint_url,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def _request(self, method: str, path: str, body: bytes = b"", ctype: str = "") -> bytes:
        req = urllib.request.Request(self.endpoint_url + path, data=body or None, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return bytes(resp.read())

    def create_bucket(self, bucket: str) -> None:
        body = json.dumps({"name": bucket}).encode()
        self._request("POST", "/storage/v1/b?project=shardcache-test", body, "application/json")

    def put_objects(self, bucket: str, objects: Mapping[str, bytes], max_workers: int = 8) -> None:
        def put(kv: tuple[str, bytes]) -> None:
            key, data = kv
            if not data:  # the emulator reads an empty media body as "no body" and fails
                self._put_empty(bucket, key)
                return
            name = urllib.parse.quote(key, safe="")
            path = f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
            self._request("POST", path, data, "application/octet-stream")

        parallel(put, objects.items(), max_workers)

    def _put_empty(self, bucket: str, key: str) -> None:
        boundary = "shardcache-boundary"
        body = (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n"
            + json.dumps({"name": key})
            + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            + f"\r\n--{boundary}--\r\n"
        ).encode()
        ctype = f"multipart/related; boundary={boundary}"
        self._request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=multipart", body, ctype)

    def delete_object(self, bucket: str, key: str) -> None:
        self._request("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(key, safe='')}")


class AzuriteServer(EmulatorProcess):
    """Azurite's blob service from the repository's node_modules, in memory."""

    name = "azurite-blob"
    scheme = "az"
    probe_path = f"/{AZURITE_ACCOUNT}?comp=list"

    def command(self, port: int) -> list[str]:
        return [
            str(azurite_binary()),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
        ]

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint_url}/{AZURITE_ACCOUNT};"
        )

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def _service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_bucket(self, bucket: str) -> None:
        self._service().create_container(bucket)

    def put_objects(self, bucket: str, objects: Mapping[str, bytes], max_workers: int = 16) -> None:
        container = self._service().get_container_client(bucket)
        parallel(
            lambda kv: container.upload_blob(kv[0], kv[1], overwrite=True),
            objects.items(),
            max_workers,
        )

    def delete_object(self, bucket: str, key: str) -> None:
        self._service().get_container_client(bucket).delete_blob(key)


def azurite_binary() -> Path:
    """`azurite-blob` from the repository's node_modules, else from PATH."""
    local = _REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"azurite-blob not found in {local.parent} or on PATH; "
        "run scripts/install-test-deps.sh (npm install at the repository root)"
    )
