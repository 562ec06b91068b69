"""Measuring pieces shared by `shardcache demo` and the benchmark suite in benchmarks/.

The demo is the benchmark's quick mode in miniature, so the parts both need live here (the
`shardcache` package never imports `benchmarks/`): deterministic datasets, a moto emulator
behind a cloud-like proxy running in its own process, and the timed readers (raw parallel GET,
s3fs, shardcache cold and warm, plain local reads). Importing this package starts nothing.
"""
