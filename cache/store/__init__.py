"""The on-disk cache: layout, index, locks, and atomic publication of files."""
