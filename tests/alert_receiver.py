#!/usr/bin/env python3
"""An HTTP receiver standing in for Discord, Slack and webhook targets in
the throwaway systemd (tests/alerts_systemd.rs): every POST is appended to
OUT as one JSON line {path, at, headers, body}; paths under /gone answer
404, everything else 204. Standard library only.

usage: alert_receiver.py PORT OUT
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        rec = {
            "path": self.path,
            "at": time.time(),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": json.loads(body) if body else None,
        }
        with open(OUT, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(404 if self.path.startswith("/gone") else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    OUT = sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
