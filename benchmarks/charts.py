"""PNG charts of a run: throughput per reader, seconds per epoch, hit rate per epoch."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .report import ORDER, mbps

COLORS = {"cloud": "#4c78a8", "direct": "#9ecae9", "local": "#54a24b"}


def draw(res: dict[str, Any], out: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    paths = []
    if any(res.get("throughput", {}).values()):
        paths.append(_throughput(res, out / f"{stem}-throughput.png"))
    if res.get("r4", {}).get("runs"):
        paths.append(_epochs(res, out / f"{stem}-epochs.png"))
    if res.get("r4_view", {}).get("s3fs_s"):
        paths.append(_view_epochs(res["r4_view"], res["date"], out / f"{stem}-view-epochs.png"))
    if res.get("r5"):
        paths.append(_hitrate(res, out / f"{stem}-hitrate.png"))
    return paths


def _view_epochs(r4: dict[str, Any], date: str, path: Path) -> Path:
    """R4 as the goal defines it: seconds of epoch 1 through the view (reading while the
    prefetch runs) and of epoch 2, against s3fs direct and the store's ceiling."""
    import matplotlib.pyplot as plt

    rows = [
        ("s3fs direct\n(every epoch)", r4["s3fs_s"], "#e45756"),
        ("raw GET x32\n(the ceiling)", r4["ceiling_s"], "#bab0ac"),
        ("view epoch 1\n(pod start + reads\nwhile prefetching)", r4["view_epoch1_s"], "#4c78a8"),
        ("view epoch 2\n(all local)", r4["view_epoch2_s"], "#54a24b"),
    ]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (_, values, color) in enumerate(rows):
        med = statistics.median(values)
        ax.bar(i, med, 0.6, color=color, yerr=[[med - min(values)], [max(values) - med]])
        ratio = statistics.median(a / b for a, b in zip(r4["s3fs_s"], values, strict=True))
        ax.text(i + 0.32, med, f"{ratio:.1f}x", ha="left", va="center", fontsize=9)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_ylabel("seconds (log scale)")
    ax.set_title(
        f"R4 through the read-through view, {date}: {r4['objects']} objects, "
        f"{r4['bytes'] / 1e6:.0f} MB,\n4 reader threads, random order; "
        "labels: s3fs time / this (median of runs)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _throughput(res: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    sets = {ds: runs for ds, runs in res["throughput"].items() if runs}
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 7), squeeze=False)
    for ax, (ds, runs) in zip(axes[0], sets.items(), strict=True):
        keys = [k for k in ORDER if any(k in r["rows"] for r in runs)]
        med, lo, hi = [], [], []
        for k in keys:
            v = [mbps(r["rows"][k]) for r in runs if k in r["rows"]]
            med.append(statistics.median(v))
            lo.append(med[-1] - min(v))
            hi.append(max(v) - med[-1])
        y = range(len(keys))
        ax.barh(list(y), med, xerr=[lo, hi], color=[COLORS[k.split("/")[0]] for k in keys])
        ax.set_yticks(list(y), keys)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("MB/s (log scale; median, whiskers min-max)")
        ax.set_title(f"{ds}: {res['plan']['runs']} run(s)")
        for i, m in enumerate(med):
            ax.text(m, i, f" {m:.0f}", va="center", fontsize=8)
        ceiling = [mbps(r["rows"]["cloud/ceiling"]) for r in runs if "cloud/ceiling" in r["rows"]]
        if ceiling:
            ax.axvline(
                statistics.median(ceiling),
                color="#e45756",
                ls="--",
                lw=1,
                label="best raw GET via proxy (ceiling)",
            )
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"Throughput, {res['date']}: cloud = through the cloud-like proxy, "
        "direct = moto without proxy, local = page cache / disk"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _epochs(res: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    runs = res["r4"]["runs"]
    n = len(runs[0]["shardcache"])
    s3 = [statistics.median(r["s3fs"][min(e, 1)] for r in runs) for e in range(n)]
    sc = [statistics.median(r["shardcache"][e] for r in runs) for e in range(n)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = list(range(1, n + 1))
    w = 0.38
    ax.bar([i - w / 2 for i in x], s3, w, label="s3fs direct", color="#e45756")
    ax.bar([i + w / 2 for i in x], sc, w, label="shardcache", color="#4c78a8")
    for i, (a, b) in enumerate(zip(s3, sc, strict=True)):
        label = f"{a / b:.1f}x" if a / b < 10 else f"{a / b:.0f}x"
        ax.text(x[i] + w / 2, b, label, ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"epoch {i}" for i in x])
    ax.set_ylabel("seconds per epoch (log scale)")
    ax.set_title(
        f"R4: {res['r4']['files']} image-like files, {res['r4']['workers']} workers, "
        "random order (s3fs epochs 3+ = epoch 2)",
        fontsize=10,
    )
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _hitrate(res: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    r5 = res["r5"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = list(range(1, r5["epochs"] + 1))
    colors = {"25%": "#4c78a8", "50%": "#f58518", "75%": "#54a24b"}
    for share, c in colors.items():
        ax.plot(x, r5["models"][f"sticky {share}"], "-o", color=c, label=f"sticky {share}")
        ax.plot(x, r5["models"][f"lru {share}"], ":x", color=c, label=f"LRU {share}")
        ax.axhline(int(share[:-1]) / 100, color=c, lw=0.8, ls="--")
    ax.plot(x, r5["engine 50%"], "-s", color="black", mfc="none", label="real engine 50%")
    ax.set_xticks(x)
    ax.set_xlabel("epoch")
    ax.set_ylabel("byte hit rate (dashed: cache/dataset bound)")
    ax.set_ylim(0, 1)
    ax.set_title("R5: hit rate per epoch under random shuffling", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
