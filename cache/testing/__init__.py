"""Test and demo infrastructure that ships as product code.

`emulators` starts real object-store emulators (moto for S3, gcp-storage-emulator for GCS,
Azurite for Azure Blob) on loopback ports, so that tests, `shardcache demo` and the benchmarks
speak the real protocols. Nothing here runs at import time.
"""
