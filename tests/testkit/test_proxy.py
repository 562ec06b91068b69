"""The cloud-like proxy, tested against a real moto server (and a raw HTTP upstream) on loopback.

moto runs with IAM authentication switched on, so every boto3 call through the proxy proves
that SigV4 signatures made for the proxy's URL still verify at the emulator.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import boto3
import botocore.config
import botocore.exceptions
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from shardcache.errors import ConfigError
from shardcache.testkit.proxy import CloudProxy
from shardcache.testkit.proxy_rules import (
    Bucket,
    FaultConfig,
    FaultRule,
    Framing,
    ProxyConfig,
    choose_fault,
    client_response_head,
    fault_offset,
    parse_upstream,
    request_framing,
    response_framing,
    take_tokens,
    wants_keep_alive,
)

BUCKET = "proxy-test"
NO_SHAPING = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=0)
pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_http(port: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/moto-api/")
            conn.getresponse().read()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)
        finally:
            conn.close()


def _client(url: str, creds: dict[str, str], attempts: int = 1, **config: Any) -> Any:
    cfg = botocore.config.Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=config.pop("read_timeout", 20),
        **config,
    )
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=cfg, **creds)


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server whose 4th and later actions require valid SigV4; yields (url, creds)."""
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_http(port, 30)
        url = f"http://127.0.0.1:{port}"
        boot = {"aws_access_key_id": "boot", "aws_secret_access_key": "boot"}
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", **boot)
        iam.create_user(UserName="tester")
        iam.put_user_policy(
            UserName="tester",
            PolicyName="all-s3",
            PolicyDocument='{"Version":"2012-10-17","Statement":'
            '[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        key = iam.create_access_key(UserName="tester")["AccessKey"]
        creds = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        _client(url, creds).create_bucket(Bucket=BUCKET)
        yield url, creds
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def objects(moto: tuple[str, dict[str, str]]) -> dict[str, bytes]:
    """Seeded straight into moto, so proxy tests start from known bytes."""
    rnd = random.Random(7)
    data = {
        "small.bin": rnd.randbytes(100_000),
        "big.bin": rnd.randbytes(20_000_000),
        "bad/key.bin": rnd.randbytes(50_000),
    }
    s3 = _client(*moto)
    for key, body in data.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return data


def _get(s3: Any, key: str, **kwargs: Any) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key, **kwargs)["Body"].read())


# ---- behaviour through a real moto --------------------------------------------------------


def test_get_ranged_get_head_and_put_are_byte_exact(moto: Any, objects: dict[str, bytes]) -> None:
    url, creds = moto
    body = random.Random(1).randbytes(3 * 2**20)  # > 1 MiB: botocore sends Expect: 100-continue
    with CloudProxy(url, NO_SHAPING) as proxy:
        s3 = _client(proxy.url, creds)
        s3.put_object(Bucket=BUCKET, Key="put/through.bin", Body=body)
        assert _get(s3, "put/through.bin") == body
        assert _get(s3, "big.bin") == objects["big.bin"]
        assert _get(s3, "big.bin", Range="bytes=1000-1999") == objects["big.bin"][1000:2000]
        assert s3.head_object(Bucket=BUCKET, Key="small.bin")["ContentLength"] == 100_000
        stats = proxy.stats()
    assert stats.connections_total == 1  # keep-alive although moto closes after each response
    assert stats.requests_total == 5


def test_wrong_secret_through_proxy_is_refused_by_moto(moto: Any, objects: Any) -> None:
    url, creds = moto
    wrong = {**creds, "aws_secret_access_key": "not-the-secret"}
    with CloudProxy(url, NO_SHAPING) as proxy, pytest.raises(botocore.exceptions.ClientError) as e:
        _get(_client(proxy.url, wrong), "small.bin")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_first_byte_delay_applies_to_every_request(moto: Any, objects: Any) -> None:
    url, creds = moto
    with CloudProxy(url, ProxyConfig(first_byte_delay_s=0.2)) as proxy:
        s3 = _client(proxy.url, creds)
        for _ in range(2):
            start = time.monotonic()
            s3.head_object(Bucket=BUCKET, Key="small.bin")
            assert time.monotonic() - start >= 0.2


def test_bandwidth_cap_bounds_one_connection(moto: Any, objects: dict[str, bytes]) -> None:
    url, creds = moto
    config = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=50e6)
    with CloudProxy(url, config) as proxy:
        start = time.monotonic()
        assert _get(_client(proxy.url, creds), "big.bin") == objects["big.bin"]
        # 20 MB at 50 MB/s is 0.4 s, less one 256 KiB burst; the bound leaves slack
        assert time.monotonic() - start >= 0.3


def test_persistent_slowdown_exhausts_botocore_retries(moto: Any, objects: Any) -> None:
    url, creds = moto
    faults = FaultConfig(slowdown_probability=1.0, rule=FaultRule(path_regex=r"/bad/"))
    config = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=0, faults=faults)
    with CloudProxy(url, config) as proxy:
        s3 = _client(proxy.url, creds, attempts=3)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            _get(s3, "bad/key.bin")
        assert e.value.response["Error"]["Code"] == "SlowDown"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert e.value.response["ResponseMetadata"]["RetryAttempts"] == 2
        assert _get(s3, "small.bin") == objects["small.bin"]
        assert proxy.stats().slowdowns_total == 3


def test_occasional_slowdown_is_retried_until_success(moto: Any, objects: Any) -> None:
    url, creds = moto
    # one draw per request, in order: pick a seed whose first request gets 503, second not
    seed = next(s for s in range(100) if _draws(s, 2) == [True, False])
    with CloudProxy(url, NO_SHAPING) as proxy:
        proxy.set_faults(FaultConfig(slowdown_probability=0.5, seed=seed))
        s3 = _client(proxy.url, creds, attempts=3)
        assert _get(s3, "small.bin") == objects["small.bin"]
        stats = proxy.stats()
    assert (stats.requests_total, stats.slowdowns_total) == (2, 1)


def _draws(seed: int, n: int) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < 0.5 for _ in range(n)]


def test_reset_mid_body_is_an_incomplete_read(moto: Any, objects: dict[str, bytes]) -> None:
    url, creds = moto
    faults = FaultConfig(reset_probability=1.0, rule=FaultRule(frozenset({"GET"})))
    config = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=0, faults=faults)
    with CloudProxy(url, config) as proxy:
        response = _client(proxy.url, creds).get_object(Bucket=BUCKET, Key="small.bin")
        with pytest.raises(botocore.exceptions.ResponseStreamingError, match="IncompleteRead"):
            response["Body"].read()
        request = AWSRequest("GET", f"{proxy.url}/{BUCKET}/small.bin")
        S3SigV4Auth(Credentials(*creds.values()), "s3", "us-east-1").add_auth(request)
        host, port = proxy.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", f"/{BUCKET}/small.bin", headers=dict(request.headers.items()))
        answer = conn.getresponse()
        length = int(answer.getheader("Content-Length", "0"))
        with pytest.raises(http.client.IncompleteRead) as e:
            answer.read()
        conn.close()
        assert length == 100_000, e.value.partial
        assert len(e.value.partial) == length // 2  # half the body, then the connection ends
        assert proxy.stats().resets_total == 2


def test_corrupt_flips_exactly_one_byte(moto: Any, objects: dict[str, bytes]) -> None:
    url, creds = moto
    faults = FaultConfig(corrupt_probability=1.0, seed=3, rule=FaultRule(path_regex="big"))
    config = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=0, faults=faults)
    with CloudProxy(url, config) as proxy:
        with pytest.raises(botocore.exceptions.FlexibleChecksumError):
            _get(_client(proxy.url, creds), "big.bin")  # botocore checks the CRC moto stored
        unchecked = _client(proxy.url, creds, response_checksum_validation="when_required")
        got = _get(unchecked, "big.bin")
        assert proxy.stats().corruptions_total == 2
    want = objects["big.bin"]
    assert len(got) == len(want)
    diffs = [i for i in range(0, len(want), 4096) if got[i : i + 4096] != want[i : i + 4096]]
    assert len(diffs) == 1
    start = diffs[0]
    got_block, want_block = got[start : start + 4096], want[start : start + 4096]
    assert sum(a != b for a, b in zip(got_block, want_block, strict=True)) == 1


def test_rule_fails_one_key_persistently_and_only_for_gets(moto: Any, objects: Any) -> None:
    url, creds = moto
    rule = FaultRule(methods=frozenset({"GET"}), path_regex=r"^/proxy-test/bad/")
    config = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=0)
    with CloudProxy(url, config) as proxy:
        s3 = _client(proxy.url, creds)
        proxy.set_faults(FaultConfig(slowdown_probability=1.0, rule=rule))
        for _ in range(3):
            with pytest.raises(botocore.exceptions.ClientError, match="SlowDown"):
                _get(s3, "bad/key.bin")
        assert s3.head_object(Bucket=BUCKET, Key="bad/key.bin")["ContentLength"] == 50_000
        s3.put_object(Bucket=BUCKET, Key="bad/other.bin", Body=b"x")
        assert _get(s3, "small.bin") == objects["small.bin"]
        proxy.set_faults(FaultConfig())
        assert _get(s3, "bad/key.bin") == objects["bad/key.bin"]
        assert proxy.stats().slowdowns_total == 3


def test_stall_makes_the_client_time_out(moto: Any, objects: Any) -> None:
    url, creds = moto
    config = ProxyConfig(faults=FaultConfig(stall_probability=1.0))
    with CloudProxy(url, config) as proxy:
        s3 = _client(proxy.url, creds, read_timeout=0.5)
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            _get(s3, "small.bin")
        assert proxy.stats().stalls_total == 1


def test_stats_count_connections_requests_and_bytes(moto: Any, objects: Any) -> None:
    url, creds = moto
    with CloudProxy(url, NO_SHAPING) as proxy:
        assert proxy.stats().requests_total == 0
        s3 = _client(proxy.url, creds)
        s3.put_object(Bucket=BUCKET, Key="stats.bin", Body=b"s" * 1000)
        _get(s3, "small.bin")
        _get(s3, "small.bin", Range="bytes=0-9")
        stats = proxy.stats()
    assert (stats.connections_total, stats.requests_total) == (1, 3)
    assert stats.request_body_bytes_total == 1000
    assert stats.response_body_bytes_total == 100_010
    assert stats.slowdowns_total == stats.resets_total == stats.corruptions_total == 0


def test_async_with_inside_a_running_loop_keeps_connections_alive(moto: Any, objects: Any) -> None:
    url, _ = moto

    async def scenario() -> tuple[list[int], int]:
        async with CloudProxy(url, NO_SHAPING) as proxy:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
                statuses = []
                for _ in range(4):  # unsigned: moto refuses with a 403 body, which is fine here
                    async with http.get(f"{proxy.url}/{BUCKET}/small.bin") as r:
                        await r.read()
                        statuses.append(r.status)
            return statuses, proxy.stats().connections_total

    statuses, connections = asyncio.run(scenario())
    assert statuses == [403] * 4
    assert connections == 1


def test_s3fs_reads_through_the_proxy_on_kept_alive_connections(
    moto: Any, objects: dict[str, bytes]
) -> None:
    s3fs = pytest.importorskip("s3fs")
    url, creds = moto
    with CloudProxy(url, ProxyConfig(bandwidth_bytes_per_s=None)) as proxy:
        fs = s3fs.S3FileSystem(
            key=creds["aws_access_key_id"],
            secret=creds["aws_secret_access_key"],
            endpoint_url=proxy.url,
            client_kwargs={"region_name": "us-east-1"},
            skip_instance_cache=True,
        )
        assert fs.cat_file(f"{BUCKET}/small.bin") == objects["small.bin"]
        assert fs.cat_file(f"{BUCKET}/big.bin", start=5, end=50) == objects["big.bin"][5:50]
        assert fs.info(f"{BUCKET}/small.bin")["size"] == 100_000
        stats = proxy.stats()
    assert stats.connections_total == 1  # aiohttp's pool kept its one connection alive


def test_command_line_proxy_serves_until_stopped(moto: Any, objects: dict[str, bytes]) -> None:
    url, creds = moto
    command = [sys.executable, "-m", "shardcache.testkit.proxy", "--upstream", url]
    command += ["--port", "0", "--first-byte-delay-s", "0", "--bandwidth-bytes-per-s", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proxy_url = proc.stdout.readline().strip()
        assert proxy_url.startswith("http://127.0.0.1:")
        assert _get(_client(proxy_url, creds), "small.bin") == objects["small.bin"]
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


# ---- framing against a raw upstream: chunked, until-close, Host passthrough ----------------


async def _raw_upstream(seen: list[bytes]) -> asyncio.Server:
    """An HTTP/1.1 server answering by path: /chunked, /close (body ends at close), else 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        if b" /chunked " in head:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        elif b" /close " in head:
            writer.write(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_chunked_and_until_close_bodies_and_raw_request_heads_pass_through() -> None:
    async def scenario() -> None:
        seen: list[bytes] = []
        server = await _raw_upstream(seen)
        port = server.sockets[0].getsockname()[1]
        async with server, CloudProxy(f"http://127.0.0.1:{port}", NO_SHAPING) as proxy:
            reader, writer = await asyncio.open_connection(*proxy.url[7:].split(":"))
            request = b"GET /chunked HTTP/1.1\r\nHost: signed.example:9\r\nX-Amz-Date: 1\r\n\r\n"
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            body = await reader.readuntil(b"X-Trailer: t\r\n\r\n")
            assert body == b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
            writer.write(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n")  # same client connection
            rest = await asyncio.wait_for(reader.read(), 10)
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
            assert rest.endswith(b"Connection: close\r\n\r\nuntil the end")
            writer.close()
            await writer.wait_closed()
            assert seen[0] == request  # byte for byte: SigV4 signs the Host header
            assert proxy.stats().connections_total == 1

    asyncio.run(scenario())


# ---- pure decisions -----------------------------------------------------------------------


def test_choose_fault_splits_one_draw_by_cumulative_probability() -> None:
    faults = FaultConfig(slowdown_probability=0.1, reset_probability=0.2, corrupt_probability=0.3)
    assert choose_fault(faults, "GET", "/b/k", 0.05) == "slowdown"
    assert choose_fault(faults, "GET", "/b/k", 0.25) == "reset"
    assert choose_fault(faults, "GET", "/b/k", 0.45) == "corrupt"
    assert choose_fault(faults, "GET", "/b/k", 0.65) is None
    assert choose_fault(FaultConfig(stall_probability=1.0), "PUT", "/", 0.999) == "stall"
    only_gets = FaultConfig(reset_probability=1.0, rule=FaultRule(frozenset({"GET"}), "k$"))
    assert choose_fault(only_gets, "GET", "/b/k", 0.5) == "reset"
    assert choose_fault(only_gets, "HEAD", "/b/k", 0.5) is None
    assert choose_fault(only_gets, "GET", "/b/k2", 0.5) is None


@pytest.mark.parametrize("probabilities", [(0.6, 0.6), (-0.1, 0.0), (1.5, 0.0)])
def test_fault_config_refuses_impossible_probabilities(probabilities: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError):
        FaultConfig(slowdown_probability=probabilities[0], reset_probability=probabilities[1])


def test_fault_offsets_stay_inside_the_body() -> None:
    assert fault_offset("reset", 100, 0.9) == 50
    assert fault_offset("corrupt", 100, 0.0) == 0
    assert fault_offset("corrupt", 100, 0.999999) == 99


def test_token_bucket_charges_bytes_beyond_the_burst_at_the_rate() -> None:
    bucket = Bucket(tokens=1000.0, stamp_s=0.0)
    bucket, wait = take_tokens(bucket, 1000, 0.0, rate=1000.0, burst=1000.0)
    assert wait == 0.0
    bucket, wait = take_tokens(bucket, 5000, 0.0, rate=1000.0, burst=1000.0)
    assert wait == pytest.approx(5.0)
    bucket, wait = take_tokens(bucket, 0, 100.0, rate=1000.0, burst=1000.0)  # long idle
    assert (wait, bucket.tokens) == (0.0, 1000.0)  # refilled, but never beyond the burst


def test_framing_follows_rfc_9112() -> None:
    assert request_framing({}) == Framing("none")
    assert request_framing({"content-length": "7"}) == Framing("length", 7)
    assert request_framing({"transfer-encoding": "chunked", "content-length": "7"}) == Framing(
        "chunked"
    )
    assert response_framing("HEAD", 200, {"content-length": "9"}) == Framing("none")
    assert response_framing("GET", 304, {}) == Framing("none")
    assert response_framing("GET", 200, {"content-length": "9"}) == Framing("length", 9)
    assert response_framing("GET", 200, {"transfer-encoding": "gzip, chunked"}) == Framing(
        "chunked"
    )
    assert response_framing("GET", 200, {}) == Framing("close")
    assert wants_keep_alive("HTTP/1.1", {}) and not wants_keep_alive("HTTP/1.0", {})
    assert not wants_keep_alive("HTTP/1.1", {"connection": "Close"})


def test_client_response_head_replaces_only_connection_management() -> None:
    head = b'HTTP/1.0 200 OK\r\nConnection: close\r\nETag: "x"\r\nKeep-Alive: 5\r\n\r\n'
    assert client_response_head(head, close=False) == b'HTTP/1.1 200 OK\r\nETag: "x"\r\n\r\n'
    assert client_response_head(head, close=True).endswith(b"Connection: close\r\n\r\n")


def test_upstream_must_be_plain_http() -> None:
    assert parse_upstream("http://127.0.0.1:5000") == ("127.0.0.1", 5000)
    with pytest.raises(ConfigError):
        parse_upstream("https://127.0.0.1:5000")
