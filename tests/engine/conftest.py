import pytest
from shardcache.backends.memory import MemoryBackend
from shardcache.config import Config
from shardcache.retry import Retry


@pytest.fixture
def store():
    return MemoryBackend("bkt")


@pytest.fixture
def config(tmp_path):
    return Config(
        cache_dir=tmp_path / "cache",
        min_free_fraction=0.0,
        multipart_threshold_bytes=2 * 1024 * 1024,
        part_size_bytes=1024 * 1024,
        retry=Retry(base_backoff_s=0.001, max_backoff_s=0.01),
    )
