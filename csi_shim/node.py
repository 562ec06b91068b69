"""The node plugin's imperative shell: publish and unpublish, in that order of side effects.

The decisions come from targets.py; this module performs them against four seams — the agent
(`AgentPort`, the HTTP client in production), the policy, the record store and the kernel
(mounter.py, mountinfo.py). It knows nothing of gRPC: it raises shardcache errors, and
service.py turns them into status codes.

Order of a publication, chosen so that a crash at any step leaves a state the next call
repairs: validate (nothing touched) -> record written -> agent pins the dataset for the pod ->
target created -> bind mount + read-only remount (`view: bind`, and `view: status` of the
dataset's status directory), or the view server's FUSE mount (`view: read-through`, see
view/server.py for its own order) -> record completed.
Unpublishing unmounts whatever is at the target, which works for both kinds of view without
the view server: its keeper notices the unmounted connection and lets it go. A failure after the
record undoes what was done, newest first, so a refused or failed request leaves nothing
mounted and no pin behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from shardcache.errors import (
    CacheError,
    CacheStateError,
    ConfigError,
    NotFoundError,
    PolicyDeniedError,
    TargetConflictError,
    UnavailableError,
    redact,
)
from shardcache.status import DatasetStatus
from shardcache.store.layout import Layout, open_dir
from shardcache.urls import StoreURL
from shardcache_cluster.policy import Decision

from . import mounter
from .mountinfo import MountEntry, mount_at, read_mountinfo
from .state import Record, StateDir
from .targets import (
    PublishAction,
    PublishSpec,
    check_local_dir,
    check_volume_id,
    decide_publish,
    parse_target_path,
    should_release,
    validate_publish,
)

log = logging.getLogger(__name__)
#: a target with more stacked mounts than this is not something a retry loop should chase
MAX_STACKED_MOUNTS = 8


class PolicyPort(Protocol):
    """The tenancy policy in force now (`ReloadingPolicy` re-reads its file on change)."""

    def check(self, namespace: str, url: str) -> Decision: ...


class AgentPort(Protocol):
    """The part of `shardcache.client.agent_client.AgentClient` the plugin uses."""

    def ready(self) -> bool: ...
    def register(
        self,
        url: str,
        owner: str,
        namespace: str | None = None,
        prefetch: str = "all",
        *,
        partition: str | None = None,
    ) -> DatasetStatus: ...
    def release(self, url: str, owner: str) -> None: ...


@dataclass(frozen=True)
class PublishRequest:
    volume_id: str
    target_path: str
    volume_context: Mapping[str, str]
    #: "mount", "block" or "" (no volume_capability in the request)
    capability: str
    readonly: bool


class ViewPort(Protocol):
    """The view server's mount verb (`shardcache_csi.view.client.ViewClient`)."""

    def mount(self, target: str, dataset: str, local_dir: str) -> None: ...


class NodeDriver:
    def __init__(
        self,
        *,
        agent: AgentPort,
        policy: PolicyPort,
        state: StateDir,
        kubelet_dir: str,
        layout: Layout,
        mounts: Callable[[], list[MountEntry]] = read_mountinfo,
        view: ViewPort | None = None,
    ) -> None:
        self.agent = agent
        #: None: this node has no view server, and read-through volumes are refused
        self.view = view
        self.policy = policy
        #: the cache's layout under the plugin's own --cache-dir: the only place it mounts from
        self.layout = layout
        self.state = state
        self.kubelet_dir = kubelet_dir
        self._mounts = mounts
        self._guard = threading.Lock()
        self._target_locks: dict[str, threading.Lock] = {}
        # held around "who else owns this dataset" + register/release, so that two volumes
        # of one pod coming and going at once cannot release a pin the other just took
        self._owners = threading.Lock()

    # ---- NodePublishVolume -------------------------------------------------------------

    def publish(self, req: PublishRequest) -> None:
        spec = validate_publish(
            req.volume_id,
            req.target_path,
            req.volume_context,
            capability=req.capability,
            readonly=req.readonly,
            kubelet_dir=self.kubelet_dir,
        )
        decision = self.policy.check(spec.namespace, spec.dataset)
        if not decision.allowed or decision.url is None:
            raise PolicyDeniedError(decision.reason)
        url = decision.url
        with self._lock(spec.target_path):
            record = self.state.get(spec.target_path)
            action = decide_publish(
                record.spec if record else None, self._options_at(spec.target_path), spec
            )
            log.info(
                "publish %s of %s for pod %s/%s: %s",
                spec.target_path,
                spec.dataset,
                spec.namespace,
                spec.pod_name,
                action.value,
            )
            if action is PublishAction.CONFLICT:
                raise TargetConflictError(
                    f"{spec.target_path} is already published with other arguments"
                    + (
                        f" (dataset {record.spec.dataset}, volume {record.spec.volume_id})"
                        if record
                        else " (a mount this plugin has no record of)"
                    )
                )
            if action is PublishAction.REMOUNT:
                mounter.remount_read_only(spec.target_path)
            elif action is PublishAction.MOUNT:
                self._mount(spec, url)

    def _mount(self, spec: PublishSpec, url: StoreURL) -> None:
        self.state.put(Record(spec, local_dir=""))
        try:
            with self._owners:
                status = self.agent.register(
                    spec.dataset,
                    spec.owner,
                    spec.namespace,
                    spec.prefetch,
                    partition=spec.partition or None,
                )
        except BaseException:
            self.state.remove(spec.target_path)  # nothing was pinned, nothing to release
            raise
        with contextlib.ExitStack() as undo:
            undo.callback(self._forget_or_release, spec)
            local_dir = str(self.layout.dataset_dir(url))
            check_local_dir(spec.dataset, str(status.local_dir), local_dir)
            if self._make_target(spec.target_path):
                undo.callback(_rmdir_quietly, spec.target_path)
            with contextlib.ExitStack() as opened:
                # opened without following a link: a plain directory under the cache root
                fd = _open_under_root(self.layout, url, spec, opened)
                if spec.view in ("bind", "status"):
                    # the descriptor, not the path: a symlink swapped in after the check
                    # changes nothing
                    mounter.bind_read_only(f"/proc/self/fd/{fd}", spec.target_path)
                elif self.view is None:
                    raise UnavailableError(
                        "this node's CSI plugin has no view server (--view-socket); use the "
                        "volume attribute view: bind, or deploy shardcache-view"
                    )
                else:
                    # the FUSE mount is made ro,nosuid,nodev,noexec at once: no half-made state
                    self.view.mount(spec.target_path, spec.dataset, local_dir)
            shown = str(self.layout.status_dir(url)) if spec.view == "status" else local_dir
            self.state.put(Record(spec, local_dir=shown))
            undo.pop_all()

    def _make_target(self, target: str) -> bool:
        """Create the target directory (the spec lets the CO leave that to the plugin)."""
        try:
            os.mkdir(target, 0o755)
            return True
        except FileExistsError:
            if not os.path.isdir(target) or os.path.islink(target):
                raise ConfigError(f"target_path {target} exists and is not a directory") from None
            return False
        except FileNotFoundError:
            raise ConfigError(
                f"the parent directory of target_path {target} does not exist (kubelet creates it)"
            ) from None

    # ---- NodeUnpublishVolume -----------------------------------------------------------

    def unpublish(self, volume_id: str, target_path: str) -> None:
        check_volume_id(volume_id)
        parse_target_path(target_path, self.kubelet_dir)
        self.retry_pending_releases()
        with self._lock(target_path):
            record = self.state.get(target_path)
            if record is not None and record.spec.volume_id != volume_id:
                raise NotFoundError(
                    f"{target_path} holds volume {record.spec.volume_id}, not {volume_id}"
                )
            for _ in range(MAX_STACKED_MOUNTS):
                if self._options_at(target_path) is None:
                    break
                mounter.unmount(target_path)
            else:
                raise CacheStateError(
                    f"{target_path} is still mounted after {MAX_STACKED_MOUNTS} unmounts"
                )
            _remove_target(target_path)
            log.info("unpublished %s", target_path)
            if record is not None:
                self._forget_or_release(record.spec)

    def _forget_or_release(self, spec: PublishSpec) -> None:
        """Release the pod's pin (unless another volume of the pod holds the dataset), then
        drop the record; if the agent does not answer, keep the record to retry later.

        Unpublishing still succeeds when the agent is down: the mount is gone, and holding
        every pod on the node in Terminating until the agent is back would be worse than a
        pin released a little late (and the agent's pod watcher drops owners of gone pods)."""
        with self._owners:
            others = [r.spec for r in self.state.all() if not r.release_pending]
            if should_release(spec, others):
                try:
                    self.agent.release(spec.dataset, spec.owner)
                except UnavailableError as e:
                    log.warning(
                        "release of %s for %s deferred: %s",
                        spec.dataset,
                        spec.owner,
                        redact(str(e)),
                    )
                    self.state.put(Record(spec, local_dir="", release_pending=True))
                    return
                except CacheError as e:  # e.g. the agent no longer knows the dataset
                    log.warning(
                        "release of %s for %s: %s", spec.dataset, spec.owner, redact(str(e))
                    )
            self.state.remove(spec.target_path)

    def retry_pending_releases(self) -> int:
        """Retry the releases the agent missed; the number still pending afterwards."""
        pending = 0
        for record in self.state.all():
            if record.release_pending:
                with self._lock(record.spec.target_path):
                    if self._options_at(record.spec.target_path) is None:
                        self._forget_or_release(record.spec)
                        pending += self.state.get(record.spec.target_path) is not None
        return pending

    # ---- start-up ----------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Rebuild the plugin's view after a restart: which records still have their mount.

        Nothing is unmounted or remounted here: running pods keep their kernel mounts, and
        kubelet's next publish or unpublish of each target finishes whatever was half done.
        """
        records = self.state.all()
        entries = self._mounts()
        mounted = sum(mount_at(entries, r.spec.target_path) is not None for r in records)
        pending = self.retry_pending_releases()
        summary = {"records": len(records), "mounted": mounted, "release_pending": pending}
        log.info("recovered state: %s", summary)
        return summary

    # ---- health --------------------------------------------------------------------------

    def healthy(self) -> bool:
        """The plugin's own health, for Probe: it answers, and it can record publications.

        Deliberately not the agent's: kubelet's liveness probe restarts a plugin whose Probe
        fails, and restarting the plugin cannot bring the agent back; publishing answers
        UNAVAILABLE while the agent is away, and kubelet retries that by itself."""
        root = self.state.root
        return root.is_dir() and os.access(root, os.W_OK | os.X_OK)

    # ---- helpers -----------------------------------------------------------------------

    def _options_at(self, path: str) -> frozenset[str] | None:
        entry = mount_at(self._mounts(), path)
        return None if entry is None else entry.options

    @contextlib.contextmanager
    def _lock(self, target: str) -> Iterator[None]:
        with self._guard:
            lock = self._target_locks.setdefault(target, threading.Lock())
        with lock:
            yield


def _open_under_root(
    layout: Layout, url: StoreURL, spec: PublishSpec, stack: contextlib.ExitStack
) -> int:
    """A descriptor (closed with `stack`) of what the target shows: the dataset's directory, or
    with `view: status` the dataset's status directory alone (CACHE/status/DIGEST), opened
    below the cache root one component at a time without following a symlink (`open_dir`)."""
    if spec.view == "status":
        base, segments, what = layout.root, ["status", layout.status_dir(url).name], "status"
    else:
        base, segments, what = layout.data_dir, layout.dataset_segments(url), "data"
    try:
        return int(stack.enter_context(open_dir(base, segments, create=False)))
    except FileNotFoundError:
        raise UnavailableError(
            f"the agent has not created the {what} directory of {spec.dataset} on this node "
            "yet; kubelet will retry"
        ) from None
    except OSError as e:  # ELOOP, ENOTDIR: a symlink or a file where a directory belongs
        raise CacheStateError(
            f"the {what} directory of {spec.dataset} under the cache root is not a plain "
            f"directory ({e.strerror}); nothing is mounted"
        ) from e


def _rmdir_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _remove_target(path: str) -> None:
    """rmdir, never a recursive delete: if anything is still inside, it is the dataset."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        os.unlink(path)
    except OSError as e:
        raise CacheStateError(
            f"cannot remove the target {path} after unmounting: {e.strerror}"
        ) from e
