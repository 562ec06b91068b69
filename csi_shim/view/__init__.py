"""The read-through view: a FUSE file system (spoken on /dev/fuse directly, see proto.py) that
lists a dataset's whole manifest, hands local files to the kernel by passthrough, and fetches
misses through the agent on open. Processes: keeper.py (holds the connections), server.py
(serves them), started by main.py; the CSI plugin asks for mounts with client.py."""
