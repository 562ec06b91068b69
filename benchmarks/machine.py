"""A description of the machine and software a run measured, for the results file."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

PACKAGES = (
    "shardcache",
    "fsspec",
    "s3fs",
    "aiobotocore",
    "botocore",
    "aiohttp",
    "moto",
    "obstore",
    "matplotlib",
    "psutil",
)


def describe() -> dict[str, str]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    disk = shutil.disk_usage("/tmp")
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": f"{mem / 2**30:.1f} GiB",
        "disk (/tmp)": f"{_disk_device()}, {disk.total / 2**30:.0f} GiB, "
        f"{disk.free / 2**30:.0f} GiB free",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _disk_device() -> str:
    try:
        out = subprocess.run(
            ["findmnt", "-no", "SOURCE,FSTYPE", "-T", "/tmp"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.replace(" ", " ") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
