"""Stand-ins for the two Kubernetes CSI sidecar images the node DaemonSet runs.

    python sidecars.py registrar --csi-address=/csi/csi.sock \\
        --kubelet-registration-path=/var/lib/kubelet/plugins/DRIVER/csi.sock --http-endpoint=:9809
    python sidecars.py livenessprobe --csi-address=/csi/csi.sock --health-port=9808

The real images (csi-node-driver-registrar, livenessprobe) are Go binaries that no package
registry reachable here ships, so the harness runs these in their place, in the same
container sandbox (the manifest's args, volumes and user). They do what the upstream
READMEs say the binaries do, no more:
- registrar: wait for the plugin's socket, ask it GetPluginInfo for the driver name, serve
  the kubelet's plugin registration API on `/registration/<driver>-reg.sock`, answering
  GetInfo with `--kubelet-registration-path` as the endpoint; `/healthz` on
  `--http-endpoint` is 200 while that socket exists; a registration the kubelet reports as
  failed makes it exit 1.
- livenessprobe: `/healthz` on `--health-port` calls the plugin's GetPluginInfo and Probe
  and answers 200 when Probe says ready, 500 otherwise.
So the harness checks what the manifest controls (paths, ports, volumes, users), not the
sidecars' own code.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: how long a stand-in waits for the plugin's socket, and for one gRPC call
WAIT_S, RPC_S = 60.0, 5.0


def _imports() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _serve_http(port: int, healthy: object) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok, text = healthy() if self.path == "/healthz" else (False, "not found")  # type: ignore[operator]
            self.send_response(200 if ok else (500 if self.path == "/healthz" else 404))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _csi(address: str):  # type: ignore[no-untyped-def]
    import grpc
    from shardcache_csi.proto import csi_pb2, csi_pb2_grpc

    deadline = time.monotonic() + WAIT_S
    while not os.path.exists(address):
        if time.monotonic() > deadline:
            raise SystemExit(f"no CSI socket at {address}")
        time.sleep(0.1)
    channel = grpc.insecure_channel(f"unix://{address}")
    return csi_pb2, csi_pb2_grpc.IdentityStub(channel)


def registrar(args: argparse.Namespace) -> None:
    import grpc

    from kubelet.proto import pluginregistration_pb2 as pb
    from kubelet.proto import pluginregistration_pb2_grpc as pb_grpc

    csi_pb2, identity = _csi(args.csi_address)
    driver = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=RPC_S).name
    done = threading.Event()
    failed: list[str] = []

    class Registration(pb_grpc.RegistrationServicer):
        def GetInfo(self, request, context):  # type: ignore[no-untyped-def]
            return pb.PluginInfo(
                type="CSIPlugin",
                name=driver,
                endpoint=args.kubelet_registration_path,
                supported_versions=["1.0.0"],
            )

        def NotifyRegistrationStatus(self, request, context):  # type: ignore[no-untyped-def]
            if not request.plugin_registered:
                failed.append(request.error)
                done.set()
            return pb.RegistrationStatusResponse()

    socket = f"/registration/{driver}-reg.sock"
    if os.path.exists(socket):
        os.unlink(socket)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_RegistrationServicer_to_server(Registration(), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    port = int(args.http_endpoint.rsplit(":", 1)[1])
    _serve_http(
        port, lambda: (os.path.exists(socket), "ok" if os.path.exists(socket) else "no socket")
    )
    print(f"registrar: {driver} registration socket {socket}", flush=True)
    done.wait()
    print(f"registrar: kubelet refused the registration: {failed}", flush=True)
    raise SystemExit(1)


def livenessprobe(args: argparse.Namespace) -> None:
    csi_pb2, identity = _csi(args.csi_address)

    def healthy() -> tuple[bool, str]:
        try:
            identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=RPC_S)
            answer = identity.Probe(csi_pb2.ProbeRequest(), timeout=RPC_S)
        except Exception as e:  # any failure of the plugin is an unhealthy answer
            return False, f"probe failed: {e}"
        # absent means ready, per the CSI spec
        value = answer.ready.value if answer.HasField("ready") else True
        return value, "ok" if value else "not ready"

    _serve_http(args.health_port, healthy)
    print(f"livenessprobe: /healthz on :{args.health_port}", flush=True)
    threading.Event().wait()


def main() -> None:
    _imports()
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=["registrar", "livenessprobe"])
    p.add_argument("--csi-address", required=True)
    p.add_argument("--kubelet-registration-path", default="")
    p.add_argument("--http-endpoint", default="")
    p.add_argument("--health-port", type=int, default=9808)
    args = p.parse_args()
    {"registrar": registrar, "livenessprobe": livenessprobe}[args.which](args)


if __name__ == "__main__":
    main()
