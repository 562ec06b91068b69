"""The R12 simulator's models, checked against answers worked out by hand.

The simulator drives the product's own split (`shardcache.partition`), so these tests also
pin that the simulated nodes fetch exactly the shares the agent would.
"""

from __future__ import annotations

import pytest
from shardcache.partition import partition

from benchmarks.partition_sim import (
    LIST_PAGE_BYTES,
    EngineModel,
    Job,
    NodeClass,
    NodeModel,
    StoreModel,
    node_keys,
    run_job,
    simulate,
)

MB = 1_000_000
STORE = StoreModel(first_byte_s=0.02, conn_bytes_per_s=100 * MB, jitter=0.0)
ENGINE = EngineModel(max_concurrency=4, part_size_bytes=10 * MB, multipart_threshold_bytes=10 * MB)
FAST = NodeModel(nic_bytes_per_s=1e12, disk_bytes_per_s=1e12)


def one(requests: tuple[int, ...], node: NodeModel = FAST, pages: int = 0, **kw: object) -> float:
    cls = NodeClass("n0", requests, pages, node, **kw)  # type: ignore[arg-type]
    return simulate([cls], STORE, ENGINE)[0].done_s


def test_the_engine_issues_ranged_parts_biggest_object_first() -> None:
    assert ENGINE.requests([5 * MB, 25 * MB, 10 * MB]) == (
        10 * MB,
        10 * MB,
        5 * MB,
        10 * MB,
        5 * MB,
    )


def test_one_request_costs_first_byte_plus_transfer_and_listing_comes_first() -> None:
    assert one((10 * MB,)) == pytest.approx(0.02 + 0.1)
    listing = 0.02 + LIST_PAGE_BYTES / (100 * MB)
    assert one((10 * MB,), pages=2) == pytest.approx(2 * listing + 0.12)


def test_concurrency_bounds_requests_in_flight() -> None:
    # 8 equal requests, 4 at a time, each at its own connection's full speed: two waves
    assert one((10 * MB,) * 8) == pytest.approx(2 * 0.12)


def test_a_nodes_nic_is_shared_fairly_by_its_transfers() -> None:
    slow = NodeModel(nic_bytes_per_s=100 * MB, disk_bytes_per_s=1e12)
    # 4 transfers of 10 MB share 100 MB/s: 40 MB take 0.4 s after the first byte
    assert one((10 * MB,) * 4, node=slow) == pytest.approx(0.02 + 0.4)
    assert one((10 * MB,) * 4, node=NodeModel(1e12, 50 * MB)) == pytest.approx(0.02 + 0.8)
    assert one((10 * MB,) * 4, node=NodeModel(1e9, 1e12, speed=0.025)) == pytest.approx(0.02 + 1.6)


def test_a_failed_node_stops_half_way() -> None:
    cls = NodeClass("n0", (10 * MB,) * 8, 0, FAST, fail_after=4)
    result = simulate([cls], STORE, ENGINE)[0]
    assert result.bytes == 40 * MB and result.failed_at_s == pytest.approx(0.12)


def test_a_capped_store_serialises_every_members_requests() -> None:
    capped = StoreModel(
        first_byte_s=0.02, conn_bytes_per_s=100 * MB, jitter=0.0, max_requests_per_s=10.0
    )
    cls = NodeClass("n0", (1000,) * 5, 0, FAST, members=4)
    done = simulate([cls], capped, ENGINE)[0].done_s
    assert done >= (5 * 4 - 4) / 10.0  # 20 requests at 10/s, the last issued after 1.6 s


@pytest.mark.parametrize("pods_per_node", [1, 3])
def test_simulated_nodes_fetch_the_products_shares(pods_per_node: int) -> None:
    job = Job(nodes=4, pods_per_node=pods_per_node, share_objects=3)
    keys = sorted(job.keys())
    for node in range(job.nodes):
        expected = [
            k
            for p in range(node * pods_per_node, (node + 1) * pods_per_node)
            for k in partition(keys, p, job.members)
        ]
        assert list(node_keys(job, node, keys)) == expected


@pytest.mark.parametrize("nodes", [1, 3, 7])
def test_cloud_bytes_are_one_dataset_with_partitions_and_n_without(nodes: int) -> None:
    store = StoreModel()
    for pods in (1, 2):
        job = Job(nodes, pods_per_node=pods, share_objects=2, shard_bytes=20 * MB)
        assert run_job(job, store, ENGINE, memo={}).cloud_ratio == 1.0
    whole = run_job(
        Job(nodes, share_objects=2, shard_bytes=20 * MB, partitioned=False), store, ENGINE, memo={}
    )
    assert whole.cloud_ratio == nodes
    assert whole.list_requests == nodes


def test_faults_a_slow_node_holds_the_job_and_a_failed_one_costs_a_refetch() -> None:
    base = Job(10, share_objects=4, shard_bytes=20 * MB)
    healthy = run_job(base, StoreModel(), ENGINE, memo={})
    slow = run_job(
        Job(10, share_objects=4, shard_bytes=20 * MB, fault="slow"),
        StoreModel(),
        ENGINE,
        NodeModel(nic_bytes_per_s=200 * MB),
        memo={},
    )
    assert slow.all_local_s > slow.healthy_local_s
    failed = run_job(
        Job(10, share_objects=4, shard_bytes=20 * MB, fault="failed"), StoreModel(), ENGINE, memo={}
    )
    assert 1.0 < failed.cloud_ratio <= 1.1  # one share, partly fetched twice
    assert failed.all_local_s > healthy.all_local_s
