"""A fault-injecting HTTP proxy on loopback in front of the moto S3 server.

Every request is forwarded to the real server; a seeded plan decides, per request,
whether the client instead gets a 500/503, a connection dropped before the answer,
a body cut off part-way (full Content-Length announced, then the socket closes),
or a slow answer. Used to test that storage reads and writes survive these faults.
"""
from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("ok", "500", "503", "drop", "truncate", "slow")


class FaultPlan:
    """Which fault the next matching request gets: a fixed queue first, then random
    faults at ``rate`` (seeded), for requests whose method is in ``methods``."""

    def __init__(self, seed: int = 0, rate: float = 0.0, kinds=("500", "503", "drop", "truncate", "slow"),
                 methods=("GET", "PUT", "HEAD", "POST")):
        self.rng = random.Random(seed)
        self.rate, self.kinds, self.methods = rate, tuple(kinds), set(methods)
        self.queue: list[str] = []
        self.lock = threading.Lock()
        self.injected: Counter = Counter()

    def next(self, method: str) -> str:
        with self.lock:
            if method not in self.methods:
                return "ok"
            if self.queue:
                kind = self.queue.pop(0)
            elif self.rate and self.rng.random() < self.rate:
                kind = self.rng.choice(self.kinds)
            else:
                kind = "ok"
            if kind != "ok":
                self.injected[kind] += 1
            return kind


def _handler(upstream: tuple[str, int], plan: FaultPlan):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _forward(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            kind = plan.next(self.command)
            if kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if kind in ("500", "503"):
                msg = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>" if kind == "500" \
                    else b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                self.send_response(int(kind))
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
                return
            if kind == "slow":
                time.sleep(0.3)
            c = http.client.HTTPConnection(*upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "proxy-connection")}
            c.request(self.command, self.path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status, r.reason)
            if self.command == "HEAD":  # no body: the upstream's headers (Content-Length included) as they are
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.end_headers()
                c.close()
                return
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if kind == "truncate" and len(data) > 1 and self.command == "GET":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)
            c.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    return Proxy


class FaultProxy:
    def __init__(self, upstream_url: str, plan: FaultPlan):
        host, port = upstream_url.split("://", 1)[1].split(":")
        self.plan = plan
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler((host, int(port)), plan))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
