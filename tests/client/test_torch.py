"""DataLoader workers read a dataset through `ShardcacheDataset`, byte-exact, with each of
the fork, spawn and forkserver start methods (in-process engine, no agent)."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from shardcache.client import api  # noqa: E402
from shardcache.client.torch import ShardcacheDataset  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def test_importing_the_client_does_not_import_torch():
    code = (
        "import sys, shardcache.client, shardcache.client.fsspec_fs; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize(
    "method",
    [
        "fork",
        pytest.param("spawn", marks=pytest.mark.slow),
        pytest.param("forkserver", marks=pytest.mark.slow),
    ],
)
def test_dataloader_workers_read_the_dataset_byte_exact(method, bucket, objects, cache_env):
    expected = [objects[k] for k in sorted(k for k in objects if k.startswith("ds/"))]
    if method == "fork":
        # the parent has a running engine and loop before the workers fork
        assert api.default_client().cat(bucket.url("ds/a.bin")) == objects["ds/a.bin"]
    dataset = ShardcacheDataset(bucket.url("ds"))
    assert len(dataset) == len(expected)
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=2,
        multiprocessing_context=method,
        timeout=120,
        persistent_workers=True,  # both epochs in the same workers: the second reads hits
    )
    assert list(loader) == expected
    # a second epoch: every item is local now
    assert list(loader) == expected


def test_transform_is_applied():
    ds = ShardcacheDataset.__new__(ShardcacheDataset)
    ds.urls, ds.transform = [], len
    assert len(ds) == 0 and ds.transform(b"abc") == 3
