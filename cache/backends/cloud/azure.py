"""Azure Blob through the Azure SDK, with the credentials adlfs would read; object reads
through obstore (objstore.py: a fraction of the SDK's CPU per object) reaching the same
account with the same credentials, and through the SDK when obstore is not installed, was
inherited through `fork`, or cannot name the key."""

from __future__ import annotations

import os
from typing import Any

from ...errors import AccessDeniedError, VersionChangedError
from ..base import Checksum, Data, ObjectInfo
from . import objstore
from ._common import Guarded, clip, is_placeholder
from .error_table import ACCESS_HINTS


def _az_info(blob: Any) -> ObjectInfo:
    md5 = getattr(blob.content_settings, "content_md5", None)
    return ObjectInfo(
        key=blob.name,
        size=int(blob.size),
        version=blob.etag.strip('"'),
        checksum=Checksum("md5", bytes(md5).hex()) if md5 else None,
    )


class AzureBackend(Guarded):
    scheme = "az"

    async def open(self, options: dict[str, Any]) -> None:
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport

        self._credential: Any = None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_concurrency)
        )
        kwargs = {
            "retry_total": 0,
            "connection_timeout": self.config.connect_timeout_s,
            "read_timeout": self.config.read_timeout_s,
            "transport": AioHttpTransport(session=self._session, session_owner=False),
            **options,
        }
        self._reader: objstore.ObjectReader | None = None
        try:
            self._service, access = self._service_client(kwargs)
        except BaseException:
            await self._session.close()
            raise
        self._container = self._service.get_container_client(self.bucket)
        if access is not None and objstore.available():
            self._reader = objstore.azure_reader(
                self.bucket, access, self.config.connect_timeout_s, self.config.read_timeout_s
            )

    def _service_client(self, kwargs: dict[str, Any]) -> tuple[Any, objstore.AzureAccess | None]:
        """Credentials from the variables adlfs reads, in adlfs's order: the SDK's client,
        and the same account and credentials for obstore (None: the SDK reads too)."""
        from azure.storage.blob.aio import BlobServiceClient

        env = os.environ
        if env.get("AZURE_STORAGE_CONNECTION_STRING"):
            conn = env["AZURE_STORAGE_CONNECTION_STRING"]
            return (
                BlobServiceClient.from_connection_string(conn, **kwargs),
                objstore.azure_access(conn),
            )
        account = env.get("AZURE_STORAGE_ACCOUNT_NAME")
        if not account:
            raise AccessDeniedError(
                f"no Azure account configured for {self.where()}; " + ACCESS_HINTS["az"]
            )
        url = f"https://{account}.blob.core.windows.net"
        access = objstore.AzureAccess(account, url)
        if env.get("AZURE_STORAGE_ACCOUNT_KEY"):
            key = env["AZURE_STORAGE_ACCOUNT_KEY"]
            cred: Any = {"account_name": account, "account_key": key}
            access = objstore.AzureAccess(account, url, key=key)
        elif env.get("AZURE_STORAGE_SAS_TOKEN"):
            sas = env["AZURE_STORAGE_SAS_TOKEN"].lstrip("?")
            url, cred = f"{url}?{sas}", None
            access = objstore.AzureAccess(account, access.endpoint, sas=sas)
        elif env.get("AZURE_STORAGE_ANON", "").lower() in ("1", "true"):
            cred = None
        else:
            from azure.identity.aio import DefaultAzureCredential

            cred = self._credential = DefaultAzureCredential()
            access = objstore.AzureAccess(account, url, credential=cred)
        return BlobServiceClient(url, credential=cred, **kwargs), access

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        async with self.guard(prefix):
            async for blob in self._container.list_blobs(name_starts_with=prefix or None):
                if not is_placeholder(blob.name, int(blob.size)):
                    out.append(_az_info(blob))
        return sorted(out, key=lambda i: i.key)

    async def stat(self, key: str) -> ObjectInfo:
        async with self.guard(key):
            props = await self._container.get_blob_client(key).get_blob_properties()
        return _az_info(props)

    async def read(self, info: ObjectInfo, start: int, end: int) -> Data:
        from azure.core import MatchConditions

        end = clip(info, start, end)
        if start >= end:
            return b""
        try:
            async with self.guard(info.key):
                if self._reader is not None and objstore.nameable(info.key):
                    data: Data = await self._reader.read(info.key, start, end, info.version)
                else:
                    stream = await self._container.get_blob_client(info.key).download_blob(
                        offset=start,
                        length=end - start,
                        etag=f'"{info.version}"',
                        match_condition=MatchConditions.IfNotModified,
                    )
                    data = await stream.readall()
        except VersionChangedError:
            # If-Match on a deleted blob also answers 412 (Azurite; RFC 9110 allows it):
            # a stat tells "gone" (NotFoundError, raised from here) from "rewritten"
            await self.stat(info.key)
            raise
        return self.checked(info, start, data, end)

    async def close(self) -> None:
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None:
            await reader.close()
        if hasattr(self, "_service"):
            await self._service.close()
        if getattr(self, "_credential", None) is not None:
            await self._credential.close()
        if hasattr(self, "_session") and not self._session.closed:
            await self._session.close()
