#!/usr/bin/env python3
"""A real HTTP(S) server for the http check's tests (tests/checks.rs, the
benchmark, the systemd tests). Standard library only. Every request is
appended to LOG (path, headers) so a test can see what was sent.

  /ok            200 "status: ok"
  /fail          500 "internal error"
  /redirect      302 to /ok
  /slow?ms=N     200 "ok" after N ms
  /hang          accepts, reads the request, never answers
  /big           200, 10 MB of 'x' with "needle" at the very end
  /stats?n=N     200 {"pipeline": {"points_5m": N}}
  /auth          200 "ok" if Authorization is "Bearer <the token in TOKEN_FILE>", else 401
  /flag?path=P   500 "bad" while the file P says "bad", else 200 "ok"

usage: check_server.py PORT LOG [CERT KEY] [TOKEN_FILE]
"""
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body, ctype="text/plain", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        with open(LOG, "a") as f:
            f.write(json.dumps({"path": self.path, "method": self.command,
                                "headers": {k.lower(): v for k, v in self.headers.items()}}) + "\n")
        if url.path == "/ok":
            self.answer(200, b"status: ok")
        elif url.path == "/fail":
            self.answer(500, b"internal error")
        elif url.path == "/redirect":
            self.answer(302, b"", headers=[("Location", "/ok")])
        elif url.path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
            self.answer(200, b"ok")
        elif url.path == "/hang":
            time.sleep(3600)
        elif url.path == "/big":
            body = b"x" * (10 * 1024 * 1024 - 6) + b"needle"
            self.answer(200, body)
        elif url.path == "/stats":
            n = float(q.get("n", ["0"])[0])
            self.answer(200, json.dumps({"pipeline": {"points_5m": n}}).encode(), "application/json")
        elif url.path == "/flag":
            try:
                bad = open(q["path"][0]).read().startswith("bad")
            except OSError:
                bad = False
            self.answer(500, b"bad") if bad else self.answer(200, b"ok")
        elif url.path == "/auth":
            token = open(TOKEN_FILE).read().strip() if TOKEN_FILE else None
            if token and self.headers.get("Authorization") == "Bearer " + token:
                self.answer(200, b"ok")
            else:
                self.answer(401, b"who are you")
        else:
            self.answer(404, b"not found")

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client that stops reading (the body cap) or goes away is what
        # some tests do on purpose; anything else is printed.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    LOG = sys.argv[2]
    TOKEN_FILE = sys.argv[5] if len(sys.argv) > 5 else None
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    if len(sys.argv) > 4 and sys.argv[3]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", flush=True)
    srv.serve_forever()
