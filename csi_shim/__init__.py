"""shardcache-csi: the CSI node plugin that shows a cached dataset to a pod as a directory.

kubelet calls NodePublishVolume for a pod's inline volume of driver `csi.shardcache.io`
(`shardcache_cluster.podspec.DRIVER_NAME`, the one spelling of it in Python); the
plugin asks the node agent for the dataset (pinning it for the pod), then bind-mounts the
dataset's local directory onto the pod's volume path, read-only, nosuid and nodev. The data
stays on the agent's disk; the pod sees plain files, and keeps seeing them across restarts of
the plugin or the agent because the mount is the kernel's, not a process's.

Importing this package does nothing; `shardcache_csi.main:main` is the console script.
"""
