"""The client's core: local hits straight from disk, misses through the agent or the engine.

The hit path is one `open()` of the mirrored path, with no index look-up, no IPC and no event
loop. That is a deliberate trust decision: the engine publishes a file at its mirrored path
only when it is complete and verified (by rename from staging), so a file there IS a verified
copy. Caveat: the copy is of the version seen at the last listing or fetch; an object that
changed remotely since then is served at its cached version until the next prefetch (which
relists, and replaces or drops changed objects).

A miss asks the agent when `SHARDCACHE_AGENT_SOCKET` is set, else runs the engine in-process
(created on the first miss). When the agent is unreachable the object is read from the store
directly and a fallback is counted; when the cache is over its budget (`path` is None) it is
read through, uncached.

In a pod, the datasets named in `SHARDCACHE_MOUNTS` (mounts.py) are served from their mounted
view and nothing else: an object is opened at its path under the mount (a miss blocks inside
the read-through view until the node has it), listings walk the mount. No agent, no engine,
no store, no cache directory is touched for them, whichever view (read-through or bind) the
volume uses; an object the view does not have is a NotFoundError, never a read from the store.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .. import keys as keymap
from ..config import Config
from ..errors import AccessDeniedError, NotFoundError, UnavailableError, UnsafeKeyError
from ..store.layout import Layout
from ..store.readonly import known_entries
from ..urls import StoreURL, parse_url
from . import listing
from .agent_client import AgentClient
from .facades import InProcessEngine, RemoteStore
from .mounts import MOUNTS_ENV, Mount, Mounts, parse_mounts

#: bound on memoised url -> path entries (~200 bytes each): a million-object dataset must not
#: grow the memo without limit; when full it starts over
_MAX_MEMO = 1 << 16


@dataclass(frozen=True)
class ClientStats:
    """Counters of this client in this process (reset in a forked child)."""

    #: reads served from a published local file, without asking anyone
    hits: int = 0
    #: reads that were not local when asked (fetched, read through, or fallen back)
    misses: int = 0
    #: misses read directly from the store because the agent was unreachable
    fallbacks: int = 0
    #: misses read directly because the cache had no room for the object
    read_through: int = 0
    #: opens served by a mounted view (SHARDCACHE_MOUNTS); the view counts its own hits and
    #: misses on the node
    view_opens: int = 0


@dataclass(frozen=True)
class ClientSettings:
    """What a client was built from, as a picklable value: a spawned DataLoader worker builds
    the same client from it, whatever that worker's environment says."""

    config: Config
    agent_socket: str | None
    #: False when the cache directory is to be learnt from the agent
    own_cache_dir: bool
    #: the datasets served from mounted views
    mounts: Mounts = field(default_factory=Mounts)

    def build(self) -> Client:
        return Client(
            self.config,
            agent_socket=self.agent_socket or "",
            own_cache_dir=self.own_cache_dir,
            mounts=self.mounts,
        )


class Client:
    """Reads objects and datasets through the cache. Use with `with`, or call `close()`."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        agent_socket: str | None = None,
        env: Mapping[str, str] | None = None,
        own_cache_dir: bool | None = None,
        mounts: Mounts | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.mounts = parse_mounts(env.get(MOUNTS_ENV)) if mounts is None else mounts
        self.config = config or Config.from_env(env)
        socket = agent_socket if agent_socket is not None else env.get("SHARDCACHE_AGENT_SOCKET")
        self.agent = AgentClient(socket) if socket else None
        # With an agent, the cache dir is the agent's (asked once) unless the caller named one.
        if own_cache_dir is None:
            own_cache_dir = config is not None or bool(env.get("SHARDCACHE_CACHE_DIR"))
        own = self.agent is None or own_cache_dir
        self.settings = ClientSettings(self.config, socket or None, own, self.mounts)
        self._cache_root: Path | None = self.config.cache_dir if own else None
        self._store_roots: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        self._view_paths: dict[str, str] = {}
        self._engine: InProcessEngine | None = None
        self._remote: RemoteStore | None = None
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "fallbacks": 0, "read_through": 0, "view_opens": 0}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        engine, remote, self._engine, self._remote = self._engine, self._remote, None, None
        if engine is not None:
            engine.close()
        if remote is not None:
            remote.close()

    def stats(self) -> ClientStats:
        self._check_fork()
        return ClientStats(**self._counts)

    def _count(self, name: str) -> None:
        self._check_fork()
        with self._lock:
            self._counts[name] += 1

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._reset_after_fork()

    # -- paths ------------------------------------------------------------------------------
    def local_path(self, url: str) -> Path:
        """Where the dataset directory or the object file of `url` lives (local or not)."""
        parsed = parse_url(url)
        in_view = self.mounts.path_of(parsed) if self.mounts else None
        if in_view is not None:
            return Path(in_view)
        root = self._store_root(parsed)
        if root is None:
            assert self.agent is not None
            return Path(self.agent.path(url))
        if not parsed.path or parsed.path.endswith("/"):
            return Path(root, parsed.path.rstrip("/")) if parsed.path else Path(root)
        return Path(root, _checked(parsed))

    def local_file(self, url: str) -> str | None:
        """The mirrored path of an object (None if the cache root is unknown right now).

        Memoised: the hit path of a warm epoch is then a dict look-up and an `open()`."""
        if self.mounts and (in_view := self._view_path(url)):
            return in_view
        path = self._paths.get(url)
        if path is None:
            parsed = parse_url(url)
            root = self._store_root(parsed)
            if root is None:
                return None
            if len(self._paths) >= _MAX_MEMO:
                self._paths.clear()
            path = self._paths[url] = f"{root}/{_checked(parsed)}"
        return path

    def _store_root(self, url: StoreURL) -> str | None:
        root = self._store_roots.get(url.store)
        if root is None:
            cache = self._cache_dir(url)
            if cache is None:
                return None
            root = str(Layout(cache).dataset_dir(url.child("")))
            self._store_roots[url.store] = root
        return root

    def _cache_dir(self, url: StoreURL) -> Path | None:
        if self._cache_root is None and self.agent is not None:
            try:
                # <cache>/data/SCHEME/BUCKET: the agent's cache dir, as this process sees it
                self._cache_root = Path(self.agent.path(str(url.child("")))).parents[2]
            except UnavailableError:
                return None
        return self._cache_root

    # -- reading ----------------------------------------------------------------------------
    def open(self, url: str) -> BinaryIO:
        """A binary file object with the object's bytes: the local file on a hit."""
        if self.mounts:
            in_view = self._view_path(url)
            if in_view:
                return self._open_in_view(url, in_view)
        path = self.local_file(url)
        if path is not None:
            try:
                f = open(path, "rb")  # noqa: SIM115 - the caller closes it
            except (FileNotFoundError, NotADirectoryError):
                pass
            else:
                self._count("hits")
                return f
        self._count("misses")
        got = self._miss(url)
        return io.BytesIO(got) if isinstance(got, bytes) else open(got, "rb")

    def _view_path(self, url: str) -> str:
        """The path of `url` under its mount, "" when no mount holds it. Memoised like
        `local_file`: parsing the URL would cost more than reading a small cached file."""
        path = self._view_paths.get(url)
        if path is None:
            if len(self._view_paths) >= _MAX_MEMO:
                self._view_paths.clear()
            path = self._view_paths[url] = self.mounts.path_of(parse_url(url)) or ""
        return path

    def _open_in_view(self, url: str, path: str) -> BinaryIO:
        """The file under the mount; what the view does not have is not read from anywhere
        else (no credentials, no second copy)."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            found = self.mounts.find(parse_url(url))
            where = f" in {found[0].dataset}, mounted at {found[0].path}" if found else ""
            raise NotFoundError(f"{url}: no such object{where} ({e.strerror}: {path})") from e
        self._count("view_opens")
        return f

    def cat(self, url: str) -> bytes:
        with self.open(url) as f:
            return f.read()

    def _miss(self, url: str) -> str | bytes:
        """The local path after fetching, or the bytes read directly from the store."""
        parsed = parse_url(url)
        if self.agent is not None:
            try:
                path = self.agent.fetch(str(parsed))
            except (UnavailableError, AccessDeniedError):
                # AccessDenied: a read-only status socket (hostpath pods) fetches nothing
                self._count("fallbacks")
                return self.remote.read(parsed)
        else:
            fetched = self.engine.fetch(parsed).path
            path = None if fetched is None else str(fetched)
        if path is None:
            self._count("read_through")
            return self.remote.read(parsed)
        return path

    @property
    def engine(self) -> InProcessEngine:
        """The in-process engine, created on first use (one per client, whatever the threads)."""
        if self._engine is None:
            self._check_fork()
            with self._lock:
                if self._engine is None:
                    self._engine = InProcessEngine(self.config)
        return self._engine

    @property
    def remote(self) -> RemoteStore:
        if self._remote is None:
            self._check_fork()
            with self._lock:
                if self._remote is None:
                    self._remote = RemoteStore(self.config)
        return self._remote

    # -- listing ----------------------------------------------------------------------------
    def entries(self, url: StoreURL, start: str) -> list[listing.Entry]:
        """Objects whose key starts with `start`: from a mounted view, a known manifest, else
        the store."""
        found = self.mounts.find(url.child(start)) if self.mounts else None
        if found is not None:
            return [e for e in _walk_view(*found) if e.key.startswith(start)]
        cache = self._cache_dir(url)
        if cache is not None:
            known = known_entries(Layout(cache).index_path, url.store, start)
            if known is not None:
                return [listing.Entry(key, size) for key, size in known]
        infos = self.remote.list_objects(url.child(start))
        return [listing.Entry(i.key, i.size) for i in infos]

    def ls(self, url: str) -> list[dict[str, Any]]:
        parsed = parse_url(url)
        prefix = listing.as_prefix(parsed.path)
        in_view = self.mounts.path_of(parsed) if self.mounts else None
        if in_view is not None and os.path.isdir(in_view):
            return _list_view_dir(parsed.bucket, prefix, in_view)
        found = listing.children(parsed.bucket, prefix, self.entries(parsed, prefix))
        if found:
            return found
        return [self.info(url)]

    def info(self, url: str) -> dict[str, Any]:
        parsed = parse_url(url)
        key = parsed.path.strip("/")
        in_view = self.mounts.path_of(parsed) if self.mounts else None
        if in_view is not None:
            return _view_info(url, parsed.bucket, key, in_view)
        if not key:
            return listing.dir_info(parsed.bucket, "")
        local = self.local_file(str(parsed.child(key))) if keymap.check_key(key) is None else None
        if local is not None and os.path.isfile(local):
            return listing.file_info(parsed.bucket, listing.Entry(key, os.stat(local).st_size))
        for e in self.entries(parsed, key):
            if e.key == key:
                return listing.file_info(parsed.bucket, e)
            if e.key.startswith(key + "/"):
                return listing.dir_info(parsed.bucket, key)
        raise NotFoundError(f"{url}: no such object or prefix in the store")

    def find(self, url: str, withdirs: bool = False) -> dict[str, dict[str, Any]]:
        parsed = parse_url(url)
        key = parsed.path.strip("/")
        prefix = listing.as_prefix(key)
        out = listing.find_infos(parsed.bucket, prefix, self.entries(parsed, prefix), withdirs)
        if not out and key:
            try:
                info = self.info(url)
            except NotFoundError:
                return {}
            if info["type"] == "file":
                return {str(info["name"]): info}
        return out


def _walk_view(mount: Mount, inside: str) -> list[listing.Entry]:
    """Every file below `inside` of a mounted view, as (key, size). The read-through view
    answers from the dataset's manifest (no fetch); a bind view shows what is local."""
    top = os.path.join(mount.path, inside) if inside else mount.path
    base = mount.dataset.prefix
    out = []
    for dirpath, _, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, mount.path)
        for name in filenames:
            key = base + (name if rel == "." else f"{rel}/{name}")
            out.append(listing.Entry(key, os.stat(os.path.join(dirpath, name)).st_size))
    return out


def _list_view_dir(bucket: str, prefix: str, path: str) -> list[dict[str, Any]]:
    """`ls` of one directory of a mounted view: its entries, not the whole tree below."""
    out = []
    with os.scandir(path) as it:
        for e in it:
            key = prefix + e.name
            if e.is_dir():
                out.append(listing.dir_info(bucket, key))
            else:
                out.append(listing.file_info(bucket, listing.Entry(key, e.stat().st_size)))
    return sorted(out, key=lambda i: str(i["name"]))


def _view_info(url: str, bucket: str, key: str, path: str) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise NotFoundError(f"{url}: no such object or directory at {path}") from e
    if stat.S_ISDIR(st.st_mode):
        return listing.dir_info(bucket, key)
    return listing.file_info(bucket, listing.Entry(key, st.st_size))


def _checked(url: StoreURL) -> str:
    problem = keymap.check_key(url.path)
    if problem is not None:
        raise UnsafeKeyError(f"{url}: the key cannot be a local path ({problem})")
    return url.path
