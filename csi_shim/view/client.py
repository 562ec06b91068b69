"""The CSI plugin's side of the view server's control socket."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from shardcache import errors

from .keeper import recv, send

_KINDS: dict[str, type[errors.CacheError]] = {
    cls.kind: cls
    for cls in (
        errors.ConfigError,
        errors.NotFoundError,
        errors.UnavailableError,
        errors.PolicyDeniedError,
        errors.AccessDeniedError,
        errors.CacheStateError,
    )
}


@dataclass(frozen=True)
class ViewClient:
    socket_path: str
    #: a mount waits for the agent's listing (server side bound: 60 s) and the mount itself
    timeout_s: float = 90.0

    def mount(self, target: str, dataset: str, local_dir: str) -> None:
        self._call({"op": "mount", "target": target, "dataset": dataset, "local_dir": local_dir})

    def status(self) -> list[dict[str, Any]]:
        return list(self._call({"op": "status"})["views"])

    def _call(self, doc: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                s.settimeout(self.timeout_s)
                s.connect(self.socket_path)
                send(s, doc)
                answer, _ = recv(s)
        except OSError as e:
            raise errors.UnavailableError(
                f"the view server at {self.socket_path} did not answer ({e}); is "
                "shardcache-view running on this node?"
            ) from e
        if answer is None:
            raise errors.UnavailableError(f"the view server at {self.socket_path} hung up")
        err = answer.get("error")
        if err:
            raise _KINDS.get(str(err.get("kind")), errors.CacheError)(str(err.get("message")))
        return answer
