"""shardcache: a node-local, verified, shared cache of cloud datasets.

The engine (`shardcache.engine`) turns an object-store prefix into a read-only local directory
that mirrors its keys; the CLI (`shardcache.cli`) and the client (`shardcache.client`) drive it
in-process or through the node agent. Importing this package does nothing: no configuration is
read, no loop or thread is started.
"""

from __future__ import annotations

__version__ = "0.1.0"
