"""`shardcache --agent SOCKET ...`: the CLI through a real agent process over its socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "shardcache"
DATA = {f"cli/f{i}.bin": os.urandom(2000 + i) for i in range(6)}


def cli(agent, *argv: str, env_socket: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SHARDCACHE_AGENT_SOCKET", None)
    args = [str(CLI), *argv]
    if env_socket:
        env["SHARDCACHE_AGENT_SOCKET"] = str(agent.socket)
    else:
        args[2:2] = ["--agent", str(agent.socket)]
    # a cache dir the in-process mode would use: it must stay untouched in agent mode
    env["SHARDCACHE_CACHE_DIR"] = str(agent.cache_dir.parent / "not-used")
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


def test_cli_through_the_agent(s3_bucket, make_agent):
    s3_bucket.put(DATA)
    agent = make_agent()
    agent.start()
    url = s3_bucket.url("cli/")

    done = cli(agent, "prefetch", url, "--output", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["state"] == "complete" and doc["objects_local"] == len(DATA)
    assert agent.client.status(url).owners == ()  # released: no --owner
    assert not (agent.cache_dir.parent / "not-used").exists()

    kept = cli(agent, "prefetch", url, "--owner", "job-7")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == doc["local_dir"]
    assert agent.client.status(url).owners == ("job-7",)

    path = cli(agent, "path", s3_bucket.url("cli/f1.bin"), env_socket=True)
    assert path.stdout.strip() == os.path.join(doc["local_dir"], "f1.bin")
    status = json.loads(cli(agent, "status", "--output", "json").stdout)
    assert [d["url"] for d in status["datasets"]] == [url]
    assert cli(agent, "status").returncode == 0
    waited = cli(agent, "wait", url, "--fraction", "1", "--timeout", "10")
    assert waited.returncode == 0, waited.stderr
    not_there = cli(
        agent, "wait", s3_bucket.url("nothing/"), "--fraction", "0.5", "--timeout", "0.5"
    )
    # a timeout lets the pod start anyway (exit 0), with a warning that says how far it got
    assert not_there.returncode == 0 and "0.0% local" in not_there.stderr
    assert "starting anyway" in not_there.stderr

    verify = cli(agent, "verify", url, "--output", "json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] == len(DATA)
    os.chmod(os.path.join(doc["local_dir"], "f2.bin"), 0o644)
    with open(os.path.join(doc["local_dir"], "f2.bin"), "r+b") as f:
        f.write(b"XX")  # damage one file behind the agent's back
    damaged = cli(agent, "verify", url)
    assert damaged.returncode == 1 and "damaged" in damaged.stdout

    refused = cli(agent, "evict", url)
    assert refused.returncode == 1 and "job-7" in refused.stderr  # pinned
    agent.client.release(url, "job-7")
    evicted = cli(agent, "evict", url, "--output", "json")
    assert evicted.returncode == 0, evicted.stderr
    assert json.loads(evicted.stdout)["objects_removed"] == len(DATA) - 1
    assert agent.terminate() == 0


def test_cli_reports_an_unreachable_agent(tmp_path):
    missing = tmp_path / "no.sock"
    done = subprocess.run(
        [str(CLI), "status", "--agent", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "shardcache-agent running" in done.stderr
