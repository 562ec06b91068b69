"""The benchmarks other parts own, run as they are: R3 (client_read.py) and R8
(webhook_latency.py). Their output is parsed, not re-implemented."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def client_read(runs: int, timeout_s: float = 900.0) -> dict[str, Any] | None:
    script = HERE / "client_read.py"
    if not script.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r3.json"
        proc = subprocess.run(
            [sys.executable, str(script), "--runs", str(runs), "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if proc.returncode != 0 or not out.exists():
            return {"error": (proc.stderr or proc.stdout)[-1500:]}
        result: dict[str, Any] = json.loads(out.read_text())
        return result


_P99 = re.compile(r"median of (\d+) runs at ([\d.]+) reviews/s: p50 ([\d.]+) ms, p99 ([\d.]+) ms")
_RUN = re.compile(r"run (\d+): .*p99_ms=([\d.]+)")


def webhook_latency(runs: int, seconds: float, timeout_s: float = 600.0) -> dict[str, Any] | None:
    script = HERE / "webhook_latency.py"
    if not script.exists():
        return None
    proc = subprocess.run(
        [sys.executable, str(script), "--runs", str(runs), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    m = _P99.search(proc.stdout)
    if proc.returncode != 0 or not m:
        return {"error": (proc.stderr or proc.stdout)[-1500:]}
    return {
        "runs": int(m.group(1)),
        "rate": float(m.group(2)),
        "p50_ms": float(m.group(3)),
        "p99_ms": float(m.group(4)),
        "p99_per_run_ms": [float(x.group(2)) for x in _RUN.finditer(proc.stdout)],
        "output": proc.stdout.strip(),
    }
