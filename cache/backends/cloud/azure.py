"""Azure Blob through the Azure SDK, with the credentials adlfs would read."""

from __future__ import annotations

import os
from typing import Any

from ...errors import AccessDeniedError, VersionChangedError
from ..base import Checksum, ObjectInfo
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
        try:
            self._service = self._service_client(kwargs)
        except BaseException:
            await self._session.close()
            raise
        self._container = self._service.get_container_client(self.bucket)

    def _service_client(self, kwargs: dict[str, Any]) -> Any:
        """Credentials from the variables adlfs reads, in adlfs's order."""
        from azure.storage.blob.aio import BlobServiceClient

        env = os.environ
        if env.get("AZURE_STORAGE_CONNECTION_STRING"):
            return BlobServiceClient.from_connection_string(
                env["AZURE_STORAGE_CONNECTION_STRING"], **kwargs
            )
        account = env.get("AZURE_STORAGE_ACCOUNT_NAME")
        if not account:
            raise AccessDeniedError(
                f"no Azure account configured for {self.where()}; " + ACCESS_HINTS["az"]
            )
        url = f"https://{account}.blob.core.windows.net"
        if env.get("AZURE_STORAGE_ACCOUNT_KEY"):
            cred: Any = {"account_name": account, "account_key": env["AZURE_STORAGE_ACCOUNT_KEY"]}
        elif env.get("AZURE_STORAGE_SAS_TOKEN"):
            url, cred = f"{url}?{env['AZURE_STORAGE_SAS_TOKEN'].lstrip('?')}", None
        elif env.get("AZURE_STORAGE_ANON", "").lower() in ("1", "true"):
            cred = None
        else:
            from azure.identity.aio import DefaultAzureCredential

            cred = self._credential = DefaultAzureCredential()
        return BlobServiceClient(url, credential=cred, **kwargs)

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

    async def read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        from azure.core import MatchConditions

        end = clip(info, start, end)
        if start >= end:
            return b""
        try:
            async with self.guard(info.key):
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
        if hasattr(self, "_service"):
            await self._service.close()
        if getattr(self, "_credential", None) is not None:
            await self._credential.close()
        if hasattr(self, "_session") and not self._session.closed:
            await self._session.close()
