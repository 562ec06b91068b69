"""Credentials never leave the process: not in output, not in status, not in any file of the
cache (the index and the error lists stored in it included), even when the SDKs fail."""

import base64
import os
import subprocess
import sys

from shardcache.testkit.proxy import CloudProxy, FaultConfig, FaultRule, ProxyConfig

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]
SECRET = "FAKEsecretKEY1234567890zz"
TOKEN = "FAKEsessionTOKENabcdef987"
ACCOUNT_KEY = base64.b64encode(b"FAKEazureACCOUNTkey-0123456789").decode()
SAS_SIG = "FAKEsasSIGNATURExyz42"
DEAD = "http://127.0.0.1:9"


def run_all(cache, url, env):
    """Every command a user might run after a failure; returns everything they would see."""
    seen = []
    for args in (["prefetch", url, "--output", "json"], ["status"], ["verify"]):
        result = subprocess.run(
            [*SHARDCACHE, *args, "--cache-dir", str(cache)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in result.stderr, result.stderr
        seen += [result.stdout, result.stderr]
    for dirpath, _, names in os.walk(cache):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                seen.append(f.read().decode("latin-1"))
    return "\n".join(seen)


def assert_clean(text, *secrets):
    for secret in secrets:
        assert secret not in text


def test_s3_secrets_stay_out_of_output_status_and_files(s3_server, s3_bucket, tmp_path):
    s3_bucket.put({"ds/ok": b"fine", "ds/bad": b"never"})
    failing = ProxyConfig(
        first_byte_delay_s=0.0,
        bandwidth_bytes_per_s=None,
        faults=FaultConfig(
            slowdown_probability=1.0, rule=FaultRule(frozenset({"GET"}), r"/ds/bad")
        ),
    )
    with CloudProxy(s3_server.endpoint_url, failing) as proxy:
        env = dict(
            os.environ,
            AWS_ENDPOINT_URL=proxy.url,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_SESSION_TOKEN=TOKEN,
            SHARDCACHE_FSYNC="0",
            SHARDCACHE_RETRY_ATTEMPTS="2",
        )
        seen = run_all(tmp_path / "c", s3_bucket.url("ds/"), env)
    assert "ds/bad" in seen  # the failure itself is reported
    assert_clean(seen, SECRET, TOKEN)
    dead = dict(env, AWS_ENDPOINT_URL=DEAD, SHARDCACHE_RETRY_ATTEMPTS="1")
    assert_clean(run_all(tmp_path / "c2", s3_bucket.url("ds/"), dead), SECRET, TOKEN)


def test_azure_account_key_and_sas_stay_out_of_everything(tmp_path):
    base = dict(os.environ, SHARDCACHE_FSYNC="0", SHARDCACHE_RETRY_ATTEMPTS="1")
    with_key = dict(
        base,
        AZURE_STORAGE_CONNECTION_STRING=(
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={DEAD}/devstoreaccount1;"
        ),
    )
    seen = run_all(tmp_path / "c", "az://container/ds/", with_key)
    assert "could not be reached" in seen
    assert_clean(seen, ACCOUNT_KEY)
    with_sas = dict(
        base,
        AZURE_STORAGE_CONNECTION_STRING=(
            f"BlobEndpoint={DEAD}/devstoreaccount1;"
            f"SharedAccessSignature=sv=2021-08-06&ss=b&srt=sco&sp=rl&sig={SAS_SIG}"
        ),
    )
    assert_clean(run_all(tmp_path / "c2", "az://container/ds/", with_sas), SAS_SIG)
