"""The `shardcache` command line."""
