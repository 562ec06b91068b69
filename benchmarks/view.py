"""The read-through view (issue 11): R2 and R4 through the view, R10, `os.walk` of 100,000 files.

    python -m benchmarks.view [--runs 5] [--quick] [--only r2,r4,r10,walk]

Method (several runs, medians, every baseline measured in the same run, interleaved):
- **R2**: every file of a dataset read (`open`, 1 MiB `read`s to the end) through a mounted
  read-through view, against the same reads of a plain local copy of the same files on the same
  disk. Datasets: 300 files of 100 KiB and 2 files of 64 MiB, all local (prefetched) before the
  clock starts. Warm: one unmeasured pass first; cold: `echo 3 > /proc/sys/vm/drop_caches`
  before each measured pass. Ratio = plain time / view time (>= 0.95 is the goal).
- **R4**: a training read loop through a view whose prefetch is running, against s3fs
  reading directly through the same proxy, in the same run: `benchmarks/view_epochs.py`.
- **R10**: the cloud-like proxy (20 ms to first byte, 90 MB/s per connection) in front of moto;
  a dataset of 300 objects of 1 MiB is being prefetched; objects from the end of the prefetch
  order (not local yet, checked) are opened and read through the view, each followed by a raw
  GET of the same object through the same proxy (boto3 `get_object().read()`). Goal: view time
  <= 1.2 x raw + 20 ms.
- **walk**: a view of a synthetic 100,000-object manifest (1,000 directories of 100 files),
  served by the real request handler in a child process, against a plain directory tree of
  100,000 empty files. `os.walk` alone, and `os.walk` + `os.stat` of every file (what a
  loader that wants sizes does). View: a fresh mount per run (kernel caches empty), then the
  same walk again (warm); plain: after dropping caches (cold), then again (warm).
The machine is shared (2 cores, other jobs running): the spread of the runs is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shardcache.client.agent_client import AgentClient
from shardcache.testkit.emulators import MotoS3Server
from shardcache.testkit.proxy_rules import ProxyConfig
from shardcache.testkit.proxyproc import ProxyProcess
from shardcache.testkit.readers import drop_page_cache
from shardcache_csi import mounter
from shardcache_csi.mountinfo import read_mountinfo
from shardcache_csi.view.client import ViewClient

from .machine import describe
from .stats import spread

RESULTS = Path(__file__).parent / "results"
CHUNK = 1 << 20
UID = "0b0b0b0b-0000-4000-8000-000000000001"


def read_all(paths: list[str]) -> int:
    n = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
    return n


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Stack:
    """moto (optionally behind the proxy), the agent, the view keeper and server."""

    def __init__(self, work: Path, proxy: ProxyConfig | None) -> None:
        self.work, self.proxy_config = work, proxy
        self.procs: list[subprocess.Popen[bytes]] = []

    @contextlib.contextmanager
    def run(self) -> Iterator[Stack]:
        with contextlib.ExitStack() as stack:
            self.moto = stack.enter_context(MotoS3Server())
            self.bucket = self.moto.new_bucket("view")
            env = {**os.environ, **self.moto.env()}
            if self.proxy_config is not None:
                proxy = stack.enter_context(ProxyProcess(self.moto.endpoint_url, self.proxy_config))
                env["AWS_ENDPOINT_URL"] = proxy.url
                self.endpoint = proxy.url
            else:
                self.endpoint = self.moto.endpoint_url
            bin_ = Path(sys.executable).parent
            w = self.work
            self._spawn(
                [
                    str(bin_ / "shardcache-agent"),
                    "--cache-dir",
                    str(w / "cache"),
                    "--socket",
                    str(w / "agent.sock"),
                    "--log-level",
                    "WARNING",
                ],
                env,
            )
            view = [str(bin_ / "shardcache-view")]
            common = ["--keeper-socket", str(w / "keeper.sock"), "--log-level", "WARNING"]
            self._spawn([*view, "keeper", *common], env)
            self._spawn(
                [
                    *view,
                    "serve",
                    *common,
                    "--socket",
                    str(w / "view.sock"),
                    "--agent-socket",
                    str(w / "agent.sock"),
                    "--state-dir",
                    str(w / "view-state"),
                    "--kubelet-dir",
                    str(w / "kubelet"),
                ],
                env,
            )
            self.agent = AgentClient(str(w / "agent.sock"), timeout_s=30.0)
            self.view = ViewClient(str(w / "view.sock"))
            wait_until(lambda: self.agent.ready() and _answers(self.view.status), "stack")
            try:
                yield self
            finally:
                for p in reversed(self.procs):
                    p.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(15)
                    if p.poll() is None:
                        p.kill()
                        p.wait(15)

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> None:
        self.procs.append(subprocess.Popen(cmd, env=env))

    def mount(self, prefix: str, volume: str, prefetch: str = "all") -> tuple[str, str]:
        """Register and mount the dataset `prefix`; (view path, the agent's local dir)."""
        url = self.bucket.url(prefix)
        doc = self.agent.register(url, f"bench-{volume}", prefetch=prefetch)
        parent = self.work / "kubelet" / "pods" / UID / "volumes" / "kubernetes.io~csi" / volume
        parent.mkdir(parents=True, exist_ok=True)
        (parent / "mount").mkdir(exist_ok=True)
        self.view.mount(str(parent / "mount"), url, str(doc.local_dir))
        return str(parent / "mount"), str(doc.local_dir)


def _answers(fn: Callable[[], Any]) -> bool:
    """Whether `fn` returns at all (any answer, even an empty one), rather than raising."""
    try:
        fn()
    except Exception:
        return False
    return True


def _holds(cond: Callable[[], Any]) -> bool:
    try:
        return bool(cond())
    except Exception:
        return False


def unmount_under(work: Path) -> None:
    """Lazily unmount every mount below `work` (views left by a run that failed)."""
    for entry in read_mountinfo():
        if entry.mount_point.startswith(f"{work}/"):
            with contextlib.suppress(OSError):
                mounter.unmount(entry.mount_point, lazy=True)


def wait_until(cond: Callable[[], Any], what: str, timeout_s: float = 60.0) -> None:
    """Poll until `cond()` returns something true; an exception counts as not yet."""
    deadline = time.monotonic() + timeout_s
    while not _holds(cond):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s} s")
        time.sleep(0.05)


def all_local(local: str, objects: dict[str, bytes]) -> bool:
    return all(
        os.path.getsize(os.path.join(local, k.split("/", 1)[1])) == len(v)
        for k, v in objects.items()
    )


def bench_r2(stack: Stack, runs: int, quick: bool) -> dict[str, Any]:
    rng = random.Random(1)
    sets = {
        "100KiB": {
            f"small/{i:04d}.bin": rng.randbytes(100 * 1024) for i in range(100 if quick else 300)
        },
        "64MiB": {f"large/{i}.bin": os.urandom(64 << 20) for i in range(1 if quick else 2)},
    }
    out: dict[str, Any] = {"cold_possible": drop_page_cache()}
    for name, objects in sets.items():
        prefix = next(iter(objects)).split("/")[0] + "/"
        stack.bucket.put(objects)
        view, local = stack.mount(prefix, name.lower())
        wait_until(functools.partial(all_local, local, objects), "prefetch", timeout_s=600)
        plain = stack.work / f"plain-{name}"
        shutil.copytree(local, plain)
        rels = sorted(k.split("/", 1)[1] for k in objects)
        paths_v = [os.path.join(view, r) for r in rels]
        paths_p = [str(plain / r) for r in rels]
        total = sum(map(len, objects.values()))
        assert read_all(paths_v) == read_all(paths_p) == total
        for mode in ("warm", "cold") if out["cold_possible"] else ("warm",):
            ratios, tv, tp = [], [], []
            for run in range(runs):
                pair = [("view", paths_v), ("plain", paths_p)]
                if run % 2:
                    pair.reverse()
                t = {}
                for label, paths in pair:
                    if mode == "cold":
                        drop_page_cache()
                    t[label] = timed(functools.partial(read_all, paths))
                ratios.append(t["plain"] / t["view"])
                tv.append(t["view"])
                tp.append(t["plain"])
            out[f"{name} {mode}"] = {
                "ratio_plain_over_view": ratios,
                "view_s": tv,
                "plain_s": tp,
                "bytes": total,
                "files": len(rels),
            }
    return out


def bench_r10(stack: Stack, runs: int, quick: bool) -> dict[str, Any]:
    rng = random.Random(2)
    n = 200 if quick else 400
    busy = {f"miss/{i:04d}.bin": rng.randbytes(1 << 20) for i in range(n)}
    idle = {f"idle/{i:04d}.bin": rng.randbytes(1 << 20) for i in range(runs * 2)}
    stack.bucket.put({**busy, **idle})
    s3 = _proxied_client(stack)
    out: dict[str, Any] = {"objects": n, "object_bytes": 1 << 20}
    # idle: nothing else runs, so the view's own cost on top of one download shows
    view, _ = stack.mount("idle/", "idle", prefetch="none")
    out["idle"] = [
        x
        for i, key in enumerate(sorted(idle))
        if (x := _miss(stack, s3, view, key, direct=bool(i % 2))) is not None
    ]
    # during a prefetch: opens of objects near the end of the prefetch order
    view, local = stack.mount("miss/", "miss")
    candidates = sorted(busy)[-n // 3 :]
    rng.shuffle(candidates)
    samples: list[dict[str, float]] = []
    for i, key in enumerate(candidates):
        if len(samples) >= runs * 2:
            break
        # odd samples ask the agent directly: what the view adds to the agent's fetch shows
        sample = _miss(stack, s3, view, key, local, direct=bool(i % 2))
        if sample is not None:
            sample["during_prefetch"] = float(
                stack.agent.status(stack.bucket.url("miss/")).state == "downloading"
            )
            samples.append(sample)
    out["samples"] = samples
    return out


def _miss(
    stack: Stack, s3: Any, view: str, key: str, local: str | None = None, direct: bool = False
) -> dict[str, float] | None:
    """A raw GET of `key` through the proxy, then an open + read of it through the view (or
    the agent's fetch alone, `direct`); None if it became local before the second step."""
    rel = key.split("/", 1)[1]
    t_raw = timed(lambda: s3.get_object(Bucket=stack.bucket.name, Key=key)["Body"].read())
    if local is not None and os.path.exists(os.path.join(local, rel)):
        return None  # the prefetch got there first: not a miss
    if direct:
        t = timed(lambda: stack.agent.fetch(stack.bucket.url(key)))
        return {"agent_fetch_s": t, "raw_s": t_raw}
    t_view = timed(lambda: read_all([os.path.join(view, rel)]))
    return {"view_s": t_view, "raw_s": t_raw}


def _proxied_client(stack: Stack) -> Any:
    import boto3

    env = stack.moto.env()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=stack.endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def walk_view_child(target: str, dirs: int, per_dir: int, ready_fd: int) -> None:
    """Serve a synthetic manifest on `target` until unmounted (runs in a forked child)."""
    import threading

    from shardcache_csi import mounter
    from shardcache_csi.view.device import FuseDevice, open_device
    from shardcache_csi.view.fs import MountState, OpenStats, ViewFs
    from shardcache_csi.view.tree import Tree

    tree = Tree((f"d{d:04d}/f{f:03d}.jpg", 1000 + f) for d in range(dirs) for f in range(per_dir))
    fd = open_device()
    dev = FuseDevice(fd)
    fs = ViewFs(
        tree,
        None,  # type: ignore[arg-type]
        dev,
        MountState(),
        OpenStats(),
        lambda job: threading.Thread(target=job).start(),
    )
    mounter.mount_fuse(fd, target, 128 * 1024)
    os.write(ready_fd, b"x")
    while (buf := dev.read()) is not None:
        fs.handle(buf)
    os._exit(0)


def walk(root: str, with_stat: bool) -> int:
    n = 0
    for d, _, files in os.walk(root):
        for f in files:
            if with_stat:
                os.stat(os.path.join(d, f))
            n += 1
    return n


def bench_walk(work: Path, runs: int, quick: bool) -> dict[str, Any]:
    dirs, per_dir = (200, 100) if quick else (1000, 100)
    plain = work / "walk-plain"
    for d in range(dirs):
        sub = plain / f"d{d:04d}"
        sub.mkdir(parents=True)
        for f in range(per_dir):
            (sub / f"f{f:03d}.jpg").touch()
    out: dict[str, Any] = {"files": dirs * per_dir}
    for with_stat in (False, True):
        label = "walk+stat" if with_stat else "walk"
        rows: dict[str, list[float]] = {
            "view cold": [],
            "view warm": [],
            "plain cold": [],
            "plain warm": [],
        }
        for _ in range(runs):
            target = work / "walk-view"
            target.mkdir(exist_ok=True)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                walk_view_child(str(target), dirs, per_dir, w)
            os.close(w)
            os.read(r, 1)
            os.close(r)
            scan_view = functools.partial(walk, str(target), with_stat)
            try:
                rows["view cold"].append(timed(scan_view))
                rows["view warm"].append(timed(scan_view))
            finally:
                mounter.unmount(str(target), lazy=True)
                os.waitpid(pid, 0)
            scan_plain = functools.partial(walk, str(plain), with_stat)
            if drop_page_cache():
                rows["plain cold"].append(timed(scan_plain))
            rows["plain warm"].append(timed(scan_plain))
        out[label] = rows
    return out


def report(res: dict[str, Any], path: Path) -> None:
    def s(values: list[float], digits: int = 3, unit: str = "") -> str:
        sp = spread(values)
        return "-" if sp is None else sp.fmt(digits, unit)

    lines = [
        f"# Read-through view: {res['date']}",
        "",
        "Method: `benchmarks/view.py` (docstring). Median [min-max] over "
        f"{res['runs']} runs. Machine: " + "; ".join(f"{k} {v}" for k, v in res["machine"].items()),
    ]
    if "r2" in res:
        lines += [
            "",
            "## R2: reads through the view / a plain local copy (goal >= 0.95)",
            "",
            "| files | page cache | plain / view (throughput ratio) | view s | plain s |",
            "|---|---|---|---|---|",
        ]
    for name, row in res.get("r2", {}).items():
        if isinstance(row, dict):
            files, mode = name.split()
            lines.append(
                f"| {row['files']} x {files} | {mode} | "
                f"{s(row['ratio_plain_over_view'])} | {s(row['view_s'])} | "
                f"{s(row['plain_s'])} |"
            )
    if "r4" in res:
        from .view_epochs import report_lines

        lines += report_lines(res["r4"], s)
    if "r10" in res:
        lines += _r10_lines(res["r10"], s)
    if "walk" in res:
        lines += _walk_lines(res["walk"], s)
    path.write_text("\n".join(lines) + "\n")


def _r10_lines(r10: dict[str, Any], s: Callable[..., str]) -> list[str]:
    busy, idle = r10["samples"], r10["idle"]
    lines = [
        "",
        "## R10: open + read of a miss through the view / raw GET of it (goal <= 1.2x + 20 ms)",
        "",
        f"1 MiB objects. During a prefetch of {r10['objects']} objects: "
        f"{len(busy)} misses, {sum(x['during_prefetch'] for x in busy):.0f} of them still "
        f"downloading when the open returned. Idle: {len(idle)} misses, nothing else "
        "running.",
        "",
        "| | during prefetch | idle |",
        "|---|---|---|",
    ]

    def col(
        rows: list[dict[str, float]],
        fn: Callable[[dict[str, float]], float],
        field: str,
        digits: int = 3,
    ) -> str:
        return s([fn(x) for x in rows if field in x], digits)

    for label, field, fn in (
        ("view open+read s", "view_s", lambda x: x["view_s"]),
        ("raw GET s (before each view open)", "view_s", lambda x: x["raw_s"]),
        ("view / raw", "view_s", lambda x: x["view_s"] / x["raw_s"]),
        (
            "view - (1.2 x raw + 20 ms), s (<= 0 meets the goal)",
            "view_s",
            lambda x: x["view_s"] - 1.2 * x["raw_s"] - 0.02,
        ),
        ("agent fetch alone s (other misses)", "agent_fetch_s", lambda x: x["agent_fetch_s"]),
        ("agent fetch / raw", "agent_fetch_s", lambda x: x["agent_fetch_s"] / x["raw_s"]),
    ):
        lines.append(f"| {label} | {col(busy, fn, field)} | {col(idle, fn, field)} |")
    return lines


def _walk_lines(walk_res: dict[str, Any], s: Callable[..., str]) -> list[str]:
    lines = [
        "",
        f"## Metadata: {walk_res['files']:,} files",
        "",
        "| scan | view cold | view warm | plain cold | plain warm |",
        "|---|---|---|---|---|",
    ]
    for label in ("walk", "walk+stat"):
        rows = walk_res[label]
        lines.append(
            f"| {label} | "
            + " | ".join(
                s(rows[k], 2, " s") for k in ("view cold", "view warm", "plain cold", "plain warm")
            )
            + " |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.view")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="r2,r4,r10,walk")
    a = p.parse_args(argv)
    only = set(a.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="sc-vb-", dir="/tmp"))
    res: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "runs": a.runs,
        "machine": describe(),
    }
    try:
        if "r2" in only:
            with Stack(work / "r2", None).run() as stack:
                res["r2"] = bench_r2(stack, a.runs, a.quick)
        cfg = ProxyConfig(first_byte_delay_s=0.020, bandwidth_bytes_per_s=90e6)
        if "r4" in only:
            from .view_epochs import bench_r4

            with Stack(work / "r4", cfg).run() as stack:
                res["r4"] = bench_r4(stack, a.runs, a.quick)
        if "r10" in only:
            with Stack(work / "r10", cfg).run() as stack:
                res["r10"] = bench_r10(stack, a.runs, a.quick)
        if "walk" in only:
            res["walk"] = bench_walk(work, a.runs, a.quick)
    finally:
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    subset = "" if {"r2", "r4", "r10", "walk"} <= only else "-" + "-".join(sorted(only))
    stem = f"{res['date']}-view" + subset + ("-quick" if a.quick else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=1))
    report(res, RESULTS / f"{stem}.md")
    print((RESULTS / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
