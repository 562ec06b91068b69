"""The real `shardcache-csi` process: killed and restarted (and the agent restarted) while a
reader keeps reading through the mount; the new process finds its records and finishes the
unpublish. Also: a live socket is never taken over, a stale one is replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from shardcache_csi.proto import csi_pb2, csi_pb2_grpc

from .conftest import POD_UID, RPC_TIMEOUT_S, Env, needs_root, publish_request

pytestmark = [pytest.mark.mounts, needs_root]

START_TIMEOUT_S = 30.0
FILES = {f"shard-{i:02d}.bin": bytes([i]) * 4096 for i in range(8)}


def start_plugin(env: Env) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "shardcache_csi.main",
        "--endpoint",
        env.endpoint,
        "--node-id",
        "node-1",
        "--state-dir",
        str(env.state_dir),
        "--kubelet-dir",
        str(env.kubelet_dir),
        "--policy-file",
        str(env.policy_file),
        "--cache-dir",
        str(env.agent.cache_dir),
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "SHARDCACHE_AGENT_SOCKET": str(env.agent.socket)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc


def wait_serving(env: Env, proc: subprocess.Popen[bytes]) -> grpc.Channel:
    channel = grpc.insecure_channel(env.endpoint)
    try:
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        channel.close()
        pytest.fail(f"the plugin did not serve within {START_TIMEOUT_S}s: {err.decode()}")
    return channel


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


class Reader(threading.Thread):
    """Reads every file through the mount, over and over, and counts full passes."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.passes = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.progress = threading.Condition()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for name, data in FILES.items():
                    assert Path(self.target, name).read_bytes() == data
            except (OSError, AssertionError) as e:
                self.errors.append(e)
                return
            with self.progress:
                self.passes += 1
                self.progress.notify_all()

    def wait_passes_beyond(self, count: int) -> None:
        with self.progress:
            ok = self.progress.wait_for(lambda: self.passes > count + 2 or self.errors, timeout=30)
        assert ok and not self.errors, self.errors


def test_restart_of_plugin_and_agent_keeps_the_mount(
    env: Env,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    env.fill(FILES)
    target = env.target()
    first = start_plugin(env)
    processes.append(first)
    channel = wait_serving(env, first)
    csi_pb2_grpc.NodeStub(channel).NodePublishVolume(
        publish_request(target, dataset=env.dataset), timeout=RPC_TIMEOUT_S
    )
    channel.close()
    env.wait_local()

    reader = Reader(target)
    reader.start()
    try:
        reader.wait_passes_beyond(0)
        first.send_signal(signal.SIGKILL)  # a crash: the socket file stays behind
        first.wait(timeout=10)
        assert os.path.exists(env.endpoint[len("unix://") :])
        reader.wait_passes_beyond(reader.passes)

        env.agent.kill()  # the real agent crashing does not matter to the mount either
        reader.wait_passes_beyond(reader.passes)
        env.agent.start()  # it adopts its cache again, the files stay the same inodes
        reader.wait_passes_beyond(reader.passes)

        second = start_plugin(env)
        processes.append(second)
        channel = wait_serving(env, second)
        reader.wait_passes_beyond(reader.passes)
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert not reader.errors

    assert env.owners() == [POD_UID]  # the pin survived both restarts
    node = csi_pb2_grpc.NodeStub(channel)
    node.NodePublishVolume(publish_request(target, dataset=env.dataset), timeout=RPC_TIMEOUT_S)
    node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id="csi-0123abcd", target_path=target),
        timeout=RPC_TIMEOUT_S,
    )
    channel.close()
    assert not os.path.exists(target)
    assert env.owners() == []  # the restarted plugin released the pod's pin

    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err.decode()
    assert "'records': 1, 'mounted': 1" in err.decode()  # it recovered its view on start


def test_a_live_socket_is_not_taken_over(
    env: Env, processes: list[subprocess.Popen[bytes]]
) -> None:
    first = start_plugin(env)
    processes.append(first)
    wait_serving(env, first).close()
    second = start_plugin(env)
    processes.append(second)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert "in use" in err.decode()
    assert first.poll() is None  # the first one keeps serving
