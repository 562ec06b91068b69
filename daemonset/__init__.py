"""What runs in the cluster: the node agent, the pod watcher, the admission webhook.

Imports flow one way: this package uses `shardcache` (the engine), never the reverse.
Importing it does nothing; each component builds its configuration in its own `main`.
"""
