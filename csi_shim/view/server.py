"""The view server: serves every read-through view of the node, one thread per mount.

It mounts views when the CSI plugin asks (control socket), and on start takes over the
views a predecessor left, getting their `/dev/fuse` descriptors back from the keeper
(keeper.py) and asking the kernel to send again whatever the predecessor read but never
answered (`FUSE_NOTIFY_RESEND`). Opens of misses wait on a pool of threads, so one slow
download never holds up the requests behind it.

Order of a mount, so that a crash at any step leaves something the next start repairs:
manifest frozen on disk -> /dev/fuse opened -> descriptor handed to the keeper -> mount(2) ->
served. A descriptor whose mount never happened is dropped by the keeper after its grace
period; a state directory without a keeper entry is removed at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shardcache.client.agent_client import AgentClient
from shardcache.errors import CacheError, ConfigError, UnavailableError

from .. import mounter
from ..mountinfo import mount_at, read_mountinfo
from ..targets import parse_target_path
from . import proto
from .device import FuseDevice, open_device
from .fs import MountState, OpenStats, ViewFs
from .keeper import KeeperClient
from .mountstate import MountDir, MountMeta
from .source import CacheSource, SourceConfig
from .tree import Tree

log = logging.getLogger(__name__)

MAX_READ = 128 * 1024


@dataclass(frozen=True)
class ViewConfig:
    #: where the CSI plugin asks for mounts
    control_socket: str
    keeper_socket: str
    agent_socket: str
    #: per-mount state (frozen manifests, backing ids); a hostPath that outlives the server
    state_dir: str
    #: kubelet's root dir: only its CSI volume paths are ever mounted over (as in the plugin)
    kubelet_dir: str = "/var/lib/kubelet"
    #: see SourceConfig.miss_timeout_s
    miss_timeout_s: float = 120.0
    #: a mount waits this long for the agent to finish listing the dataset; kubelet retries
    #: NodePublishVolume after a failure, so this only needs to cover a typical listing
    listing_timeout_s: float = 60.0
    #: opens of misses waiting at once; each holds a thread blocked on the agent
    miss_threads: int = 64
    #: how often open counts are sent to the agent
    report_interval_s: float = 2.0
    #: False: never ask the kernel for passthrough (reads then go through this process)
    passthrough: bool = True


@dataclass
class View:
    meta: MountMeta
    fd: int
    fs: ViewFs
    source: CacheSource
    stats: OpenStats
    thread: threading.Thread | None = None


class ViewServer:
    def __init__(self, config: ViewConfig) -> None:
        self.config = config
        self.agent = AgentClient(
            config.agent_socket, timeout_s=5.0, fetch_timeout_s=config.miss_timeout_s
        )
        self.keeper = KeeperClient(config.keeper_socket)
        self.pool = ThreadPoolExecutor(config.miss_threads, thread_name_prefix="miss")
        self.views: dict[str, View] = {}
        self._lock = threading.Lock()

    # -- mounting -------------------------------------------------------------------------
    def mount(self, target: str, dataset: str, local_dir: str) -> None:
        """Mount the view of `dataset` on `target` (an existing empty directory)."""
        parse_target_path(target, self.config.kubelet_dir)  # ConfigError for any other path
        if not os.path.isdir(target) or os.path.islink(target):
            raise ConfigError(f"the view target {target} is not a directory")
        if mount_at(read_mountinfo(), target) is not None:
            raise ConfigError(f"{target} is already a mount point")
        meta = MountMeta(target, dataset, local_dir)
        mdir = MountDir(self.config.state_dir, meta.ident)
        mdir.create(meta, self._wait_manifest(dataset))
        fd = open_device()
        try:
            self.keeper.put(meta.ident, {"target": target}, fd)
        except OSError as e:
            os.close(fd)
            mdir.remove()
            raise UnavailableError(
                f"the view keeper at {self.config.keeper_socket} did not answer ({e}); "
                "without it a restart of the view server would break the mount"
            ) from e
        try:
            mounter.mount_fuse(fd, target, MAX_READ)
        except OSError:
            with contextlib.suppress(OSError):
                self.keeper.drop(meta.ident)
            os.close(fd)
            mdir.remove()
            raise
        self._serve(meta, fd, MountState(), resend=False)
        log.info("mounted the view of %s on %s", dataset, target)

    def _wait_manifest(self, dataset: str) -> list[tuple[str, int]]:
        """The dataset's manifest once the agent has listed it. The first looks come soon
        (a small prefix lists in tens of ms, and the pod's start waits on this mount), then
        every 0.2 s (a large one takes seconds)."""
        deadline = time.monotonic() + self.config.listing_timeout_s
        pause = 0.01
        while True:
            try:
                return list(self.agent.manifest(dataset))
            except UnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(0.2, pause * 2)

    # -- takeover -------------------------------------------------------------------------
    def take_over(self) -> int:
        """Serve every view the keeper holds whose mount is still there; the number."""
        ids = self.keeper.ids()
        entries = read_mountinfo()
        taken = 0
        for ident in ids:
            got = self.keeper.get(ident)
            if got is None:
                continue
            _meta, fd = got
            mdir = MountDir(self.config.state_dir, ident)
            try:
                meta = mdir.meta()
            except (OSError, ValueError, KeyError):
                meta = None
            entry = None if meta is None else mount_at(entries, meta.target)
            if meta is None or entry is None or entry.fs_type != mounter.FUSE_TYPE:
                os.close(fd)
                self.keeper.drop(ident)
                mdir.remove()
                continue
            state = MountState(passthrough=mdir.load_init(), backing=mdir.load_backing())
            self._serve(meta, fd, state, resend=True)
            taken += 1
        self._remove_orphans(set(ids))
        log.info("took over %d view(s)", taken)
        return taken

    def _remove_orphans(self, held: set[str]) -> None:
        root = os.path.join(self.config.state_dir, "views")
        with contextlib.suppress(FileNotFoundError):
            for ident in os.listdir(root):
                if ident not in held:
                    MountDir(self.config.state_dir, ident).remove()

    # -- serving --------------------------------------------------------------------------
    def _serve(self, meta: MountMeta, fd: int, state: MountState, *, resend: bool) -> None:
        mdir = MountDir(self.config.state_dir, meta.ident)
        state.on_backing = mdir.append_backing
        tree = Tree(mdir.objects())
        source = CacheSource(
            SourceConfig(meta.local_dir, meta.dataset, self.config.miss_timeout_s), self.agent
        )
        stats = OpenStats()
        device = FuseDevice(fd)
        fs = ViewFs(
            tree,
            source,
            device,
            state,
            stats,
            self._blocking,
            max_write=MAX_READ,
            passthrough=self.config.passthrough,
        )
        view = View(meta, fd, fs, source, stats)
        with self._lock:
            self.views[meta.ident] = view
        view.thread = threading.Thread(
            target=self._loop, args=(view, device, mdir), name=f"view {meta.target}", daemon=True
        )
        view.thread.start()
        if resend:
            with contextlib.suppress(OSError):
                device.write(proto.notify_resend())

    def _blocking(self, job: Any) -> None:
        self.pool.submit(job)

    def _loop(self, view: View, device: FuseDevice, mdir: MountDir) -> None:
        passthrough = view.fs.state.passthrough
        try:
            while not view.fs.destroyed:
                buf = device.read()
                if buf is None:
                    break
                view.fs.handle(buf)
                if view.fs.state.passthrough != passthrough:
                    passthrough = view.fs.state.passthrough
                    mdir.save_init(bool(passthrough))
        except OSError as e:
            log.error("view %s stopped: %s", view.meta.target, e)
        finally:
            self._gone(view, device, mdir)

    def _gone(self, view: View, device: FuseDevice, mdir: MountDir) -> None:
        """The mount is gone (ENODEV): forget it everywhere."""
        log.info("view %s unmounted", view.meta.target)
        with self._lock:
            self.views.pop(view.meta.ident, None)
        with contextlib.suppress(OSError):
            self.keeper.drop(view.meta.ident)
        device.close()
        mdir.remove()

    # -- keeper and reports ---------------------------------------------------------------
    def sync_keeper(self) -> None:
        """Give a restarted keeper back the descriptors it lost."""
        held = set(self.keeper.ids())
        with self._lock:
            missing = [v for i, v in self.views.items() if i not in held]
        for view in missing:
            self.keeper.put(view.meta.ident, {"target": view.meta.target}, view.fd)
            log.warning("keeper lost %s: handed it back", view.meta.target)

    def report(self) -> None:
        """Send each view's open counts (a delta) and recent failures to the agent."""
        with self._lock:
            views = list(self.views.values())
        for view in views:
            delta = view.stats.take()
            failures, view.source.failures[:] = list(view.source.failures), []
            uid = _pod_uid(view.meta.target, self.config.kubelet_dir)
            failures = [{**f, "pod": uid} for f in failures]
            if not any(delta.values()) and not failures:
                continue
            try:
                self.agent.report_view(view.meta.dataset, delta, failures)
            except CacheError:
                view.stats.give_back(delta)
                view.source.failures[:0] = failures

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "target": v.meta.target,
                    "dataset": v.meta.dataset,
                    "passthrough": v.fs.state.passthrough,
                    "files": v.fs.tree.files,
                }
                for v in self.views.values()
            ]


def _pod_uid(target: str, kubelet_dir: str) -> str:
    """The UID of the pod a view belongs to, from kubelet's target path (for its Events)."""
    return parse_target_path(target, kubelet_dir)[0]
