"""The Python client: agent access, path helpers and the `shardcache` fsspec protocol."""
