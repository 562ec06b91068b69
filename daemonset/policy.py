"""Which dataset URLs a namespace may use: the operator's tenancy policy, as a pure model.

The webhook, the CSI plugin and the agent's pod watcher all ask the same question — may a pod
in namespace N read URL U? — so the answer lives here once, apart from any I/O but
`load_policy`. The file is JSON or YAML (a ConfigMap key mounted as a file)::

    namespaces:
      team-a: ["s3://bucket-a/", "gs://shared/public/"]
      "*": []              # every other namespace: nothing

A namespace uses its own entry, else the `"*"` entry, else nothing. A prefix matches on
directory boundaries: `s3://b/img` allows `s3://b/img/` and `s3://b/img/train/`, never
`s3://b/images/`. Schemes compare canonically (`gcs://` is `gs://`, `abfs://` is `az://`).

Outside a cluster, with no policy file at all (`load_policy(None)`), every cloud URL is allowed:
a single machine needs no configuration. In cluster mode (`in_cluster`: kubelet sets
`KUBERNETES_SERVICE_HOST` in every container) a missing policy file allows nothing. A named file
that is missing or malformed is an error at start, never a silent allow-all.

`ReloadingPolicy` is the one component the webhook, the CSI plugin, the agent and its pod
watcher share to follow the file as the operator edits the ConfigMap: a grant reaches the next
mount, a revocation stops the next mount and registration. A file that becomes unreadable or
malformed later allows nothing until it is fixed (fail closed: an edit meant to revoke a grant
must never leave the grant in force because it had a typo).

Whatever the policy says, only cloud schemes are ever allowed for pods,
and a URL whose path holds `.`/`..`/empty segments, a backslash or a control character is
refused: a prefix check on a path that a later component would normalise differently is no
check at all.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardcache.errors import ConfigError
from shardcache.urls import StoreURL, parse_url, require_cloud

log = logging.getLogger(__name__)

WILDCARD = "*"
#: longest URL accepted from a pod; longer ones are hostile or a mistake (S3 keys stop at 1024)
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class Decision:
    """The answer for one (namespace, URL): allowed or not, and a message saying why."""

    allowed: bool
    reason: str
    #: the URL parsed and treated as a dataset (prefix ending in "/"), when it parsed at all
    url: StoreURL | None = None


@dataclass(frozen=True)
class Policy:
    """Namespace -> allowed dataset prefixes; `rules is None` means "no policy: allow all"."""

    rules: Mapping[str, tuple[StoreURL, ...]] | None = None

    def check(self, namespace: str, url: str) -> Decision:
        return check(self, namespace, url)

    def prefixes_for(self, namespace: str) -> tuple[StoreURL, ...] | None:
        """Allowed prefixes of `namespace`; None when there is no policy (allow all)."""
        if self.rules is None:
            return None
        if namespace in self.rules:
            return self.rules[namespace]
        return self.rules.get(WILDCARD, ())


ALLOW_ALL = Policy(None)
#: no entry and no wildcard: every namespace gets nothing
DENY_ALL = Policy({})


def check(policy: Policy, namespace: str, url: str) -> Decision:
    """May a pod in `namespace` use dataset `url`? Pure and total: never raises."""
    try:
        parsed = validate_pod_url(url)
    except ConfigError as e:
        return Decision(False, str(e))
    allowed = policy.prefixes_for(namespace)
    if allowed is None:
        return Decision(True, "no policy file: every cloud URL is allowed", parsed)
    for prefix in allowed:
        if within(parsed, prefix):
            return Decision(True, f"allowed by {prefix} for namespace {namespace!r}", parsed)
    return Decision(
        False,
        f"namespace {namespace!r} may not use {parsed}; the operator's policy allows "
        + (", ".join(str(p) for p in allowed) if allowed else "no dataset")
        + " (ask the cluster operator to extend it)",
        parsed,
    )


def within(url: StoreURL, prefix: StoreURL) -> bool:
    """True when dataset `url` lies inside `prefix`, on a directory boundary."""
    same_store = url.scheme == prefix.scheme and url.bucket == prefix.bucket
    return bool(same_store and url.prefix.startswith(prefix.prefix))


def validate_pod_url(url: object) -> StoreURL:
    """Parse a URL that a pod asked for: a cloud scheme and a clean path, as a dataset."""
    if not isinstance(url, str):
        raise ConfigError(f"a dataset URL must be a string, got {type(url).__name__}")
    if len(url) > MAX_URL_CHARS:
        raise ConfigError(f"dataset URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise ConfigError(f"dataset URL {_short(url)!r} contains a control character or `\\`")
    parsed = parse_url(url.strip())
    require_cloud(parsed)
    for segment in parsed.prefix.split("/")[:-1]:
        if segment in ("", ".", ".."):
            raise ConfigError(
                f"dataset URL {_short(url)!r} has an empty, `.` or `..` path segment; "
                "write the prefix plainly, like s3://bucket/datasets/imagenet/"
            )
    return parsed.as_dataset()


def parse_policy(doc: Any) -> Policy:
    """Build a Policy from the decoded file; raise ConfigError naming the bad entry."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("namespaces"), Mapping):
        raise ConfigError('a policy must be a mapping with a "namespaces" mapping inside')
    unknown = set(doc) - {"namespaces"}
    if unknown:
        raise ConfigError(f"unknown policy keys {sorted(unknown)}; only 'namespaces' is read")
    rules: dict[str, tuple[StoreURL, ...]] = {}
    for namespace, prefixes in doc["namespaces"].items():
        if not isinstance(namespace, str) or not isinstance(prefixes, list):
            raise ConfigError(f"policy entry {namespace!r} must map a name to a list of URLs")
        try:
            rules[namespace] = tuple(validate_pod_url(p) for p in prefixes)
        except ConfigError as e:
            raise ConfigError(f"policy entry for namespace {namespace!r}: {e}") from e
    return Policy(rules)


def load_policy(path: str | Path | None) -> Policy:
    """Read the policy file (JSON, or YAML when PyYAML is installed); None = allow all."""
    if path is None:
        return ALLOW_ALL
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the policy file {path}: {e.strerror}") from e
    return parse_policy(_decode(text, str(path)))


def _decode(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml  # PyYAML comes with the k8s extra; JSON needs nothing
    except ImportError as e:
        raise ConfigError(f"{where} is not JSON, and PyYAML is not installed to read YAML") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is neither valid JSON nor valid YAML: {e}") from e


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def in_cluster(env: Mapping[str, str]) -> bool:
    """Cluster mode: kubelet sets KUBERNETES_SERVICE_HOST in every container it starts."""
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


#: a file's identity and content version: (inode, mtime ns, size), or None when unreadable
FileStamp = tuple[int, int, int] | None


def stamp_of(path: Path) -> FileStamp:
    """What changes when a file is rewritten in place or kubelet swaps its `..data` symlink."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class PolicySource:
    """Where the policy comes from, and how it behaves without one."""

    path: Path | None
    #: cluster mode: no file (or an unreadable one) allows nothing
    cluster: bool
    #: the file is stat'ed at most this often; kubelet refreshes a mounted ConfigMap within
    #: about a minute, so a second costs nothing and is far finer than that
    check_interval_s: float = 1.0


def without_file(cluster: bool) -> Policy:
    """The policy in force when no file is named: allow all on one machine, nothing in a
    cluster (a DaemonSet started without its ConfigMap must not open every bucket)."""
    return DENY_ALL if cluster else ALLOW_ALL


class ReloadingPolicy:
    """The policy in force, re-read when its file changes; safe to share between threads.

    `current()` costs one `stat` at most every `check_interval_s`, so callers ask it on every
    decision (each review, publish, registration, pod event) instead of running a timer.
    `generation` counts the policies put in force (1 after start); `last_error` says why the
    file is refused right now, None when it is in force.
    """

    def __init__(self, source: PolicySource, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._clock = clock
        self._lock = threading.Lock()
        self.last_error: str | None = None
        if source.path is None:
            self._policy, self._stamp = without_file(source.cluster), None
        else:
            # raises ConfigError: an unusable file at start is the operator's to fix now
            self._stamp = stamp_of(source.path)
            self._policy = load_policy(source.path)
        self.generation = 1
        self._checked_at = clock()

    def current(self) -> Policy:
        """The policy to decide with now (re-read first if the file changed)."""
        self.maybe_reload()
        return self._policy

    @property
    def in_force(self) -> Policy:
        """The policy as last loaded, without looking at the file (for a caller whose own
        timer calls `maybe_reload`)."""
        return self._policy

    def check(self, namespace: str, url: str) -> Decision:
        return check(self.current(), namespace, url)

    def maybe_reload(self, force: bool = False) -> str | None:
        """Re-read the file if it changed: "ok", "error" (now allowing nothing) or None."""
        path = self.source.path
        if path is None:
            return None
        with self._lock:
            now = self._clock()
            if not force and now - self._checked_at < self.source.check_interval_s:
                return None
            self._checked_at = now
            stamp = stamp_of(path)
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            try:
                policy, error = load_policy(path), None
            except ConfigError as e:
                policy, error = DENY_ALL, str(e)
            self._policy, self.last_error = policy, error
            self.generation += 1
        if error is not None:
            log.error("policy file %s is unusable, allowing nothing until fixed: %s", path, error)
            return "error"
        log.info("policy file %s reloaded (generation %d)", path, self.generation)
        return "ok"
