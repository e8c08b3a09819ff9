"""A fault proxy for the chart's end-to-end tests: stands between a step and one remote (Vault
over HTTP, or the API server over HTTPS with the emulator's own serving pair, so a pod's
in-cluster configuration trusts it), logs every call, and kills a step at its k-th remote call:
the call is carried out upstream, its answer is held back, and `Calls.fired` tells the harness
to kill the step (as a node loss or an eviction would) before the step learns the outcome."""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Call:
    remote: str
    method: str
    path: str
    code: int


@dataclass
class Calls:
    """The calls of the steps through every proxy, one count across remotes."""
    log: list[Call] = field(default_factory=list)
    armed: bool = False  # counting the calls of the step under test
    count: int = 0
    kill_at: int | None = None
    fired: threading.Event = field(default_factory=threading.Event)  # the runner's `interrupt`
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, armed: bool):
        with self.lock:
            self.armed, self.count = armed, 0

    def reset(self, kill_at: int | None = None):
        with self.lock:
            self.armed, self.count, self.kill_at = False, 0, kill_at
            self.fired.clear()
            self.released.clear()

    def _enter(self) -> bool:
        """Counts a call; whether it is the one the step dies at."""
        with self.lock:
            if not self.armed:
                return False
            self.count += 1
            return self.count == self.kill_at


class FaultProxy:
    def __init__(self, name: str, upstream_port: int, calls: Calls, tls_dir: Path | None = None):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                kill = calls._enter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                with calls.lock:
                    calls.log.append(Call(name, self.command, self.path.split("?")[0], response.status))
                if kill:
                    # Done upstream; the step never hears of it.
                    calls.fired.set()
                    calls.released.wait(120)
                    self.close_connection = True
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_LIST = do_HEAD = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls_dir:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_dir / "tls.crt", tls_dir / "tls.key")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
