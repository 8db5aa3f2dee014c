#!/usr/bin/python3
"""listener.py PORT LOG: a webhook receiver on 127.0.0.1:PORT for the suite.

Every POST is appended to LOG as one JSON line: {"t": arrival in ms since the
epoch, "path", "headers" (names in lower case), "body_b64": the exact bytes}.
The path says how to answer:
  /ok/...        200
  /flaky/N/...   500 to the first N requests of each webhook-id, then 200
  /down/...      500 always
"""
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log_path = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
seen = {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.time() * 1000.0
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        parts = self.path.split("?")[0].strip("/").split("/")
        hid = self.headers.get("webhook-id", "")
        with lock:
            seen[hid] = seen.get(hid, 0) + 1
            count = seen[hid]
            with open(log_path, "a") as f:
                f.write(json.dumps({"t": t, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body_b64": base64.b64encode(body).decode()}) + "\n")
        code = 200
        if parts[0] == "down":
            code = 500
        elif parts[0] == "flaky" and count <= int(parts[1]):
            code = 500
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
