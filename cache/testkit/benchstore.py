"""A moto S3 emulator seeded with datasets, reachable directly and through a cloud-like proxy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from .emulators import MotoS3Server
from .proxy import ProxyConfig
from .proxyproc import ProxyProcess

BUCKET = "shardcache-bench"


@dataclass(frozen=True)
class Endpoint:
    """One way to reach the store: its URL and the SDK environment variables that select it."""

    label: str
    url: str
    env: Mapping[str, str]

    def s3_options(self) -> dict[str, object]:
        """`Config.backend_options["s3"]` that point the engine here, without touching the
        process environment (subprocesses get `env` instead)."""
        return {
            "key": self.env["AWS_ACCESS_KEY_ID"],
            "secret": self.env["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": self.url, "region_name": "us-east-1"},
        }


class BenchStore:
    """`with BenchStore(proxy_config) as store:` starts moto and the proxy process.

    `store.cloud` goes through the proxy (latency and per-connection bandwidth as S3), and
    `store.direct` reaches moto itself, the ceiling of this machine without the proxy.
    """

    def __init__(self, proxy_config: ProxyConfig) -> None:
        self.proxy_config = proxy_config
        self._s3 = MotoS3Server()
        self._proxy: ProxyProcess | None = None
        self.direct: Endpoint | None = None
        self.cloud: Endpoint | None = None

    def __enter__(self) -> BenchStore:
        self._s3.start()
        try:
            self._s3.create_bucket(BUCKET)
            env = self._s3.env()
            self.direct = Endpoint("direct (no proxy)", self._s3.endpoint_url, env)
            self._proxy = ProxyProcess(self._s3.endpoint_url, self.proxy_config).__enter__()
            self.cloud = Endpoint(
                "cloud-like proxy", self._proxy.url, dict(env, AWS_ENDPOINT_URL=self._proxy.url)
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proxy is not None:
            self._proxy.__exit__(None, None, None)
            self._proxy = None
        self._s3.stop()

    def put(self, objects: Mapping[str, bytes]) -> None:
        self._s3.put_objects(BUCKET, objects, max_workers=16)

    def proxy_bytes_out(self) -> int:
        """Response body bytes the proxy has sent so far (the "cloud egress" of R6)."""
        if self._proxy is None:
            raise RuntimeError("the store is not running")
        return int(self._proxy.stats()["response_body_bytes_total"])

    def endpoints(self) -> list[Endpoint]:
        assert self.cloud is not None and self.direct is not None
        return [self.cloud, self.direct]
