"""Rigs shared by `shardcache demo`, the benchmarks (benchmarks/) and the tests; not the product.

What is here: a launcher for moto's S3 server (`emulators`), a reverse proxy that gives a
loopback emulator the latency, per-connection bandwidth and faults of a cloud store (`proxy`,
`proxy_rules`, and `proxyproc` to run it in a process of its own), deterministic datasets
(`datasets`), a moto store behind that proxy (`benchstore`), the timed readers a throughput
comparison needs (`readers`) and the demo's quick comparison (`quick`).

Why it ships inside `shardcache` at all: `shardcache demo` is the README's first command and
must work from an installed package, so the demo's pieces must be importable from one. It is
fenced: it needs the `bench` extra (`pip install 'shardcache[s3,bench]'`: moto, s3fs), and an
import-linter `protected` contract lets only `shardcache.cli.demo` import it, so the engine, the
client, the agent and the CSI plugin never depend on a rig. The fakes a user may want in their
own tests (`shardcache.backends.memory`, `shardcache.backends.faults`) are product code and stay
in `shardcache.backends`. The GCS and Azure emulator launchers, which only the tests start, are
in tests/emulators.py; the policy simulation models are in benchmarks/models.py.

Importing this package starts nothing.
"""
