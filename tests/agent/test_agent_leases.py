"""Pins of owners that are not pods follow their owner: the real agent process on its unix
socket, real client processes that live, exit or are killed, S3 on moto."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from shardcache.errors import AccessDeniedError

WAIT_S = 30.0
#: a client process: register for cli-PID, say so, release when told, exit
CLIENT = r"""
import os, sys
from shardcache.client.agent_client import AgentClient
client = AgentClient(sys.argv[1], timeout_s=10.0)
owner = f"cli-{os.getpid()}"
client._request("POST", "/v1/datasets",
                {"url": sys.argv[2], "owner": owner, "durable": sys.argv[3] == "durable"})
print(owner, flush=True)
if sys.stdin.readline().strip() == "release":
    client.release(sys.argv[2], owner)
    print("released", flush=True)
"""


def eventually(check, what):
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.05)


def client_process(agent, url, kind="lease"):
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(agent.socket), url, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    owner = proc.stdout.readline().strip()
    assert owner.startswith("cli-"), owner
    return proc, owner


def release_and_end(proc):
    """Tell the client to release its own pin; wait for it to exit (closing its pipes)."""
    out, _ = proc.communicate("release\n", timeout=30)
    assert out.strip() == "released", out


def owners(agent, url):
    return sorted(agent.client.status(url).owners)


def sweeps(agent):
    return agent.metrics()["shardcache_lease_sweeps_total"]


@pytest.fixture
def dataset(s3_bucket):
    s3_bucket.put({"ds/a.bin": b"a" * 100})
    return s3_bucket.url("ds/")


FAST = ["--lease-ttl", "1", "--lease-sweep-interval", "0.1"]


def test_a_killed_clients_pin_is_reclaimed_a_live_ones_is_kept(dataset, make_agent):
    agent = make_agent(extra=FAST)
    agent.start()
    live, live_owner = client_process(agent, dataset)
    killed, killed_owner = client_process(agent, dataset)
    try:
        assert owners(agent, dataset) == sorted([live_owner, killed_owner])
        killed.kill()
        killed.communicate(timeout=10)
        eventually(lambda: owners(agent, dataset) == [live_owner], "the killed client's pin")
        assert agent.metrics()["shardcache_lease_reclaims_total"] == 1
        # the live client outlasts many TTLs: the agent renews its lease while it runs
        start = sweeps(agent)
        eventually(lambda: sweeps(agent) >= start + 30, "thirty more sweeps (3 TTLs)")
        assert owners(agent, dataset) == [live_owner]
    finally:
        release_and_end(live)
    assert owners(agent, dataset) == []


def test_releasing_another_live_owners_pin_is_refused(dataset, make_agent):
    agent = make_agent()
    agent.start()
    proc, owner = client_process(agent, dataset)
    try:
        with pytest.raises(AccessDeniedError, match="still running"):
            agent.client.release(dataset, owner)  # root, but not the owner's process
        assert owners(agent, dataset) == [owner]
    finally:
        release_and_end(proc)  # the owner itself may
    assert owners(agent, dataset) == []


def test_durable_pins_stay_and_pins_without_a_lease_are_adopted_at_restart(
    dataset, make_agent, tmp_path
):
    agent = make_agent()
    agent.start()
    durable, durable_owner = client_process(agent, dataset, "durable")
    gone, _ = client_process(agent, dataset)
    for proc in (durable, gone):
        proc.communicate("", timeout=30)  # exits without releasing
    assert agent.terminate() == 0
    # pins recorded before leases existed (no book at all): each gets a lease nobody renews
    book = tmp_path / "cache" / "leases.json"
    kept = [x for x in json.loads(book.read_text())["leases"] if x["durable"]]
    book.write_text(json.dumps({"leases": kept}))
    again = make_agent(extra=FAST)
    again.start()
    eventually(lambda: owners(again, dataset) == [durable_owner], "the unleased pin reclaimed")
    start = sweeps(again)
    eventually(lambda: sweeps(again) >= start + 20, "twenty more sweeps")
    assert owners(again, dataset) == [durable_owner]  # durable: until released


def test_the_clis_explicit_owner_pins_until_released(dataset, make_agent):
    agent = make_agent(extra=FAST)
    agent.start()
    cli = [sys.executable, "-m", "shardcache.cli.main"]
    done = subprocess.run(
        [*cli, "prefetch", dataset, "--owner", "keep", "--agent", str(agent.socket)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    start = sweeps(agent)
    eventually(lambda: sweeps(agent) >= start + 20, "twenty sweeps after the CLI exited")
    assert owners(agent, dataset) == ["keep"]
