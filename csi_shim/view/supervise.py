"""The CSI plugin runs the view server as its child and restarts it when it dies.

Why a child of the plugin and not a container of its own: the server needs exactly the
plugin's privileges and mounts (CAP_SYS_ADMIN, kubelet's pods directory with bidirectional
propagation, the cache, the agent's socket), so one privileged container serves both. What
must outlive them both, the `/dev/fuse` descriptors, is held by the keeper in a DaemonSet of
its own; when the plugin's container restarts, its new view server takes the mounts back.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: pause before a crashed server is started again, so a server that cannot start does not spin
RESTART_DELAY_S = 1.0
#: a server asked to stop gets this long before it is killed (its mounts stay either way)
STOP_TIMEOUT_S = 5.0


def server_command(
    *, socket: str, keeper_socket: str, agent_socket: str, state_dir: str, kubelet_dir: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shardcache_csi.view.main",
        "serve",
        "--socket",
        socket,
        "--keeper-socket",
        keeper_socket,
        "--agent-socket",
        agent_socket,
        "--state-dir",
        state_dir,
        "--kubelet-dir",
        kubelet_dir,
    ]


class Supervisor:
    """`with Supervisor(cmd):` runs `cmd`, restarting it whenever it exits, until the block
    ends (then it is terminated)."""

    def __init__(self, cmd: Sequence[str]) -> None:
        self.cmd = list(cmd)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="view server", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.proc = subprocess.Popen(self.cmd)
            self.starts += 1
            code = self.proc.wait()
            if self._stop.is_set():
                return
            log.warning("the view server exited with %s; starting it again", code)
            self._stop.wait(RESTART_DELAY_S)
