"""The node agent: one per node, owns the node's cache directory and serves it on a socket.

`main` builds the configuration, `service.Agent` wraps the engine (datasets, owners, prefetch
tasks), `server` is the aiohttp shell of docs/agent-api.md, `metrics` the Prometheus text,
`watcher` the pod watcher. Importing this package does nothing.
"""
