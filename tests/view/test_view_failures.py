"""Daemons die under a reading pod: the view server (kill -9, restarted: it takes its mounts
back from the keeper), the keeper (restarted: the server hands the connections back), the
agent (kill -9 mid-epoch: local files keep opening, misses wait for its return). Also a torch
DataLoader with fork workers over a cold view."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
from csi.conftest import publish_request
from shardcache_csi.proto import csi_pb2, csi_pb2_grpc
from shardcache_csi.view.keeper import KeeperClient

from .conftest import ViewEnv, make_objects, needs_fuse, sha

pytestmark = [pytest.mark.mounts, needs_fuse]


class Reader(threading.Thread):
    """Opens and reads every file of `root` in a fixed order, `rounds` times; records the
    first error and each file's digest."""

    def __init__(self, root: str, keys: list[str], rounds: int = 1) -> None:
        super().__init__(daemon=True)
        self.root, self.keys, self.rounds = root, keys, rounds
        self.digests: dict[str, str] = {}
        self.error: BaseException | None = None
        self.done_count = 0

    def run(self) -> None:
        try:
            for _ in range(self.rounds):
                for key in self.keys:
                    with open(os.path.join(self.root, key), "rb") as f:
                        self.digests[key] = sha(f.read())
                    self.done_count += 1
        except BaseException as e:  # the test asserts there was none
            self.error = e


def _quiet(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except OSError:
        return None


def wait_for(cond, what: str, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_view_server_killed_mid_read_is_taken_over_without_an_error(view_env: ViewEnv) -> None:
    view_env.fill(make_objects(60, seed=11))
    target = view_env.target()
    view_env.publish(target)
    keys = sorted(view_env.objects)
    held = open(os.path.join(target, keys[0]), "rb")  # noqa: SIM115 (read across the kill)
    first = held.read(10)
    reader = Reader(target, keys, rounds=2)
    reader.start()
    wait_for(lambda: reader.done_count >= 5, "the reader did not start")
    view_env.server.kill()
    assert reader.is_alive(), "the reader finished before the kill: nothing was tested"
    # passthrough: a file already open reads on while no server runs
    assert first + held.read() == view_env.objects[keys[0]]
    held.close()
    time.sleep(0.5)  # opens now block in the kernel, waiting for a server
    view_env.restart_server()
    reader.join(120)
    assert not reader.is_alive() and reader.error is None, reader.error
    assert reader.digests == {k: sha(v) for k, v in view_env.objects.items()}
    assert len(os.listdir(target)) == 5  # still mounted and served: no ENOTCONN
    view_env.unpublish(target)


def test_keeper_restart_then_server_restart_keeps_the_mount(view_env: ViewEnv) -> None:
    view_env.fill(make_objects(10, seed=12))
    target = view_env.target()
    view_env.publish(target)
    view_env.keeper.kill()
    view_env.keeper.start()
    # the server hands its connections to the new keeper within a report interval
    keeper = KeeperClient(str(view_env.root / "keeper.sock"))
    wait_for(lambda: bool(_quiet(keeper.ids)), "the new keeper did not get the view back")
    view_env.server.kill()
    view_env.restart_server()
    reader = Reader(target, sorted(view_env.objects))
    reader.run()
    assert reader.error is None, reader.error
    assert reader.digests == {k: sha(v) for k, v in view_env.objects.items()}
    view_env.unpublish(target)


def test_agent_killed_mid_epoch_local_files_go_on_and_misses_resume(view_env: ViewEnv) -> None:
    view_env.fill(make_objects(40, seed=13))
    target = view_env.target()
    view_env.publish(target)
    keys = sorted(view_env.objects)
    # half the dataset local, then the agent dies
    for key in keys[:20]:
        with open(os.path.join(target, key), "rb") as f:
            f.read()
    local_dir = str(view_env.status().local_dir)
    view_env.agent.kill()
    missing = [k for k in keys[20:] if not os.path.exists(os.path.join(local_dir, k))]
    assert missing, "everything was local before the kill: no miss waits for the agent"
    for key in keys[:20]:  # local: no agent needed
        with open(os.path.join(target, key), "rb") as f:
            assert f.read() == view_env.objects[key]
    reader = Reader(target, keys[20:])
    reader.start()
    time.sleep(1.0)  # the reader now waits on a miss, within the view's bound (15 s)
    view_env.agent.start()
    reader.join(60)
    assert not reader.is_alive() and reader.error is None, reader.error
    assert reader.digests == {k: sha(view_env.objects[k]) for k in keys[20:]}
    view_env.unpublish(target)


def test_torch_dataloader_with_fork_workers_reads_a_cold_epoch(view_env: ViewEnv) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, Dataset

    view_env.fill(make_objects(40, seed=14))
    target = view_env.target()
    view_env.publish(target)

    class Folder(Dataset):  # type: ignore[misc,type-arg]
        """ImageFolder-style: classes are the directories, samples the files."""

        def __init__(self, root: str) -> None:
            self.samples = sorted(
                (os.path.relpath(os.path.join(d, f), root), os.path.basename(d))
                for d, _, files in os.walk(root)
                for f in files
            )
            self.root = root

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, i: int) -> tuple[str, str, str]:
            rel, label = self.samples[i]
            with open(os.path.join(self.root, rel), "rb") as f:
                return rel, label, sha(f.read())

    ds = Folder(target)
    assert len(ds) == 40 and {label for _, label in ds.samples} == {f"class-{i}" for i in range(5)}
    loader = DataLoader(
        ds,
        batch_size=4,
        shuffle=True,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=60,
        generator=torch.Generator().manual_seed(0),
    )
    seen = {}
    for rels, _labels, digests in loader:
        seen.update(zip(rels, digests, strict=True))
    assert seen == {k: sha(v) for k, v in view_env.objects.items()}
    view_env.unpublish(target)


def start_plugin(view_env: ViewEnv) -> subprocess.Popen[bytes]:
    """The real `shardcache-csi`, running its own view server (as in the DaemonSet), in a
    session of its own so that one killpg takes both down, like a dying container."""
    root = view_env.root
    cmd = [
        sys.executable,
        "-m",
        "shardcache_csi.main",
        "--endpoint",
        f"unix://{root}/csi2.sock",
        "--node-id",
        "node-1",
        "--state-dir",
        str(root / "state2"),
        "--kubelet-dir",
        str(root / "kubelet"),
        "--policy-file",
        str(root / "policy.json"),
        "--cache-dir",
        str(root / "cache"),
        "--view-socket",
        str(view_env.view_socket),
        "--view-state-dir",
        str(root / "view-state"),
        "--view-keeper-socket",
        str(root / "keeper.sock"),
    ]
    env = {**os.environ, "SHARDCACHE_AGENT_SOCKET": str(view_env.agent.socket)}
    with open(root / "plugin.log", "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)


def test_plugin_and_its_view_server_killed_mid_read(view_env: ViewEnv) -> None:
    view_env.server.kill()  # this test's view server is the plugin's child
    view_env.fill(make_objects(60, seed=15))
    plugin = start_plugin(view_env)
    try:
        view_env.wait_view_server(ours=False)
        channel = grpc.insecure_channel(f"unix://{view_env.root}/csi2.sock")
        node = csi_pb2_grpc.NodeStub(channel)
        target = view_env.target()
        req = publish_request(target, dataset=view_env.dataset, view="read-through")
        node.NodePublishVolume(req, timeout=60)
        reader = Reader(target, sorted(view_env.objects), rounds=2)
        reader.start()
        wait_for(lambda: reader.done_count >= 5, "the reader did not start")
        os.killpg(plugin.pid, signal.SIGKILL)
        plugin.wait(10)
        assert reader.is_alive(), "the reader finished before the kill: nothing was tested"
        time.sleep(0.5)
        plugin = start_plugin(view_env)  # its new view server takes the mount over
        reader.join(120)
        assert not reader.is_alive() and reader.error is None, reader.error
        assert reader.digests == {k: sha(v) for k, v in view_env.objects.items()}
        node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="csi-0123abcd", target_path=target),
            timeout=60,
        )
        assert not os.path.exists(target)
        channel.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(plugin.pid, signal.SIGKILL)
        plugin.wait(10)
