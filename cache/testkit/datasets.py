"""Deterministic, incompressible datasets generated on the fly (nothing is downloaded).

Two shapes matter for training data: image-like sets (many files around 110 KiB, where
per-request latency dominates) and shard-like sets (few files of 64-256 MiB, where bandwidth
and ranged parallelism dominate).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MiB = 1024 * 1024
KiB = 1024


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate: `name` is also the key prefix in the bucket."""

    name: str
    files: int
    #: per-file sizes in bytes, cycled; an image-like set varies around its mean
    sizes: tuple[int, ...]
    seed: int = 7

    def describe(self) -> str:
        total = sum(self.sizes[i % len(self.sizes)] for i in range(self.files))
        lo, hi = min(self.sizes), max(self.sizes)
        span = (
            f"{lo / KiB:.0f}-{hi / KiB:.0f} KiB"
            if hi < MiB
            else (f"{lo / MiB:.0f}-{hi / MiB:.0f} MiB")
        )
        return f"{self.name}: {self.files} files of {span}, {total / 1e6:.0f} MB"


def image_like(files: int, seed: int = 7) -> DatasetSpec:
    """Files of 90-130 KiB (mean ~110 KiB), like JPEG-encoded ImageNet samples."""
    rng = random.Random(seed)
    return DatasetSpec(
        "images", files, tuple(90 * KiB + rng.randrange(40 * KiB) for _ in range(97)), seed
    )


def shard_like(sizes_mib: tuple[int, ...], seed: int = 7) -> DatasetSpec:
    """WebDataset/MDS-style shards of the given sizes in MiB."""
    return DatasetSpec("shards", len(sizes_mib), tuple(s * MiB for s in sizes_mib), seed)


def generate(spec: DatasetSpec) -> dict[str, bytes]:
    """Keys under `spec.name/` mapped to bytes. Incompressible (random) so no layer can win by
    compressing; built from a random block with a per-object random head so objects differ."""
    rng = random.Random(spec.seed)
    block = rng.randbytes(MiB)
    out: dict[str, bytes] = {}
    for i in range(spec.files):
        size = spec.sizes[i % len(spec.sizes)]
        if size <= MiB // 2:
            start = rng.randrange(MiB - size)
            body = rng.randbytes(64) + block[start : start + size - 64]
            out[f"{spec.name}/{i // 1000:03d}/sample-{i:06d}.jpg"] = body
        else:
            reps = -(-size // (MiB + 256))
            out[f"{spec.name}/shard-{i:04d}.tar"] = ((rng.randbytes(256) + block) * reps)[:size]
    return out
