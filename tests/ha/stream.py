#!/usr/bin/python3
"""A steady stream of POST /predict requests, for the failover suite.

Usage: stream.py URL IMAGE RATE SECONDS OUT
Posts IMAGE (raw bytes) RATE times a second for SECONDS, one request at a
time, each with a 5 s limit, and writes one line per request to OUT:
"<seconds since start> <HTTP code or 0> <job_id or ->". Bounded in count and
time; stops by itself.
"""
import http.client
import json
import sys
import time
import urllib.parse


def main(url, image, rate, seconds, out):
    u = urllib.parse.urlsplit(url)
    body = open(image, "rb").read()
    start = time.monotonic()
    n = 0
    with open(out, "w", buffering=1) as f:
        while n < rate * seconds:
            due = start + n / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            n += 1
            code, job = 0, "-"
            try:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                c.request("POST", "/predict", body, {"Content-Type": "application/octet-stream"})
                r = c.getresponse()
                code = r.status
                data = json.loads(r.read() or b"{}")
                if code == 200 and data.get("job_id"):
                    job = data["job_id"]
                c.close()
            except (OSError, ValueError, http.client.HTTPException):
                pass
            f.write(f"{time.monotonic() - start:.3f} {code} {job}\n")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        print(__doc__.strip())
        sys.exit(2)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
