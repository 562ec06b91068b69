"""Serving TLS from certificate files that cert-manager (or an operator) rotates in place.

Python cannot swap the SSLContext of a listening server, but a handshake can: the context
handed to the server has an SNI callback (called on every ClientHello, with or without a
server name) that moves the connection to the newest context. A reload builds a whole new
context first and swaps one reference only when it loaded cleanly, so a half-written pair
(new certificate, old key) never serves: the previous pair goes on serving until the files
agree, and connections already open keep theirs. No restart, no failed handshake.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int] | None, ...]


def file_stamp(*paths: Path) -> Stamp:
    """What changes when a file is rewritten or a kubelet symlink swap lands."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A fresh server context: TLS 1.2+ (the API server speaks 1.2 and 1.3)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def cert_expiry_s(cert_file: Path) -> float | None:
    """notAfter of the first certificate in the file, as Unix time; None if unreadable."""
    try:
        # The stdlib's only X.509 decoder; stable since Python 2.7 and used by CPython's own
        # tests. `cryptography` would do it too, but is not a dependency of the webhook.
        decoded = ssl._ssl._test_decode_cert(str(cert_file))  # type: ignore[attr-defined]
        return float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except (OSError, ssl.SSLError, KeyError, ValueError):
        return None


class ReloadingTLS:
    """Owns the server's TLS contexts; `maybe_reload()` is called on a timer."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._stamp = file_stamp(cert_file, key_file)
        #: the context given to the server: it only routes handshakes to `current`
        self.front = server_context(cert_file, key_file)
        self.front.sni_callback = self._route
        self.current = self.front
        self.expiry_s = cert_expiry_s(cert_file)

    def _route(
        self, conn: ssl.SSLObject | ssl.SSLSocket, _name: str | None, context: ssl.SSLContext
    ) -> None:
        current = self.current
        if current is not context:
            conn.context = current

    def maybe_reload(self) -> str | None:
        """Load the files if they changed: "ok", "error" (old pair kept), or None."""
        stamp = file_stamp(self.cert_file, self.key_file)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            context = server_context(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            # Often a rotation caught between its two writes; the next change completes it.
            log.warning(
                "certificate files changed but do not load yet (%s); keeping the "
                "previous certificate",
                e,
            )
            return "error"
        self.current = context
        self.expiry_s = cert_expiry_s(self.cert_file)
        log.info("serving the new certificate from %s", self.cert_file)
        return "ok"
