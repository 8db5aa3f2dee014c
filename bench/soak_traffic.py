#!/usr/bin/python3
"""Traffic for bench/soak.sh: an open-loop mix of valid and invalid requests
at a fixed rate for a fixed time, each on its own connection (a thread pool,
so a held `?wait=` or a slow answer cannot hold back the next request).

usage: soak_traffic.py URL IMAGE_DIR RATE SECONDS OUT_TSV

Writes one line per request to OUT_TSV: send time (epoch s), kind, HTTP code
(0 = no answer: refused, reset or timed out), seconds, and the job id of a
200 answer to a POST (empty otherwise). The kinds and what each must get:
  raw, json          a valid image (raw bytes / JSON base64) -> 200 + job id
  wait               GET /job/{id}?wait=5 on an id that got 200 -> 200
  health             GET /health -> 200
  not_image          text posted as image/jpeg -> 4xx
  truncated          the first third of a JPEG -> 4xx
  too_large          a body past MAX_BODY_BYTES -> 413
  bad_json           malformed JSON / JSON without image_data / bad base64 -> 4xx
  bad_id             GET /job/ with an id no job can have -> 4xx
bench/soak.sh judges the codes against the Redis restart window.
"""
import base64
import concurrent.futures
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

MIX = [  # kind, weight
    ("raw", 28), ("json", 17), ("wait", 20), ("health", 5), ("not_image", 6),
    ("truncated", 6), ("too_large", 3), ("bad_json", 8), ("bad_id", 7),
]


def main():
    url, imgdir, rate, secs, out = (sys.argv[1], sys.argv[2], float(sys.argv[3]),
                                    float(sys.argv[4]), sys.argv[5])
    u = urllib.parse.urlsplit(url)
    images = []
    for name in sorted(os.listdir(imgdir)):
        if name.endswith((".jpg", ".png")):
            data = open(os.path.join(imgdir, name), "rb").read()
            images.append((data, "image/jpeg" if name.endswith(".jpg") else "image/png"))
    jpegs = [d for d, t in images if t == "image/jpeg"]
    big = os.urandom(3 * 1024 * 1024)  # MAX_BODY_BYTES is 2M in the soak
    recent = []  # ids that got 200, newest last
    lock = threading.Lock()
    outf = open(out, "a", buffering=1)
    rng = random.Random(7)
    kinds = [k for k, w in MIX for _ in range(w)]

    def request(kind, when):
        delay = when - time.time()
        if delay > 0:
            time.sleep(delay)
        method, path, body, headers = "POST", "/predict", None, {}
        if kind == "raw":
            body, ctype = rng.choice(images)
            headers["Content-Type"] = ctype
        elif kind == "json":
            data, _ = rng.choice(images)
            body = json.dumps({"image_data": base64.b64encode(data).decode()}).encode()
            headers["Content-Type"] = "application/json"
        elif kind == "wait":
            with lock:
                jid = rng.choice(recent[-200:]) if recent else None
            if jid is None:
                kind, method, path = "health", "GET", "/health"
            else:
                method, path = "GET", "/job/%s?wait=5" % jid
        elif kind == "health":
            method, path = "GET", "/health"
        elif kind == "not_image":
            body = b"this is not an image, just some text " * 40
            headers["Content-Type"] = "image/jpeg"
        elif kind == "truncated":
            d = rng.choice(jpegs)
            body = d[: len(d) // 3]
            headers["Content-Type"] = "image/jpeg"
        elif kind == "too_large":
            body = big
            headers["Content-Type"] = "application/octet-stream"
        elif kind == "bad_json":
            body = rng.choice([b'{"image_data": "abc', b'{"image": "x"}', b'[1, 2, 3]',
                               b'{"image_data": "!!!not base64!!!"}', b"{}"])
            headers["Content-Type"] = "application/json"
        elif kind == "bad_id":
            method = "GET"
            path = "/job/" + rng.choice(["NOSUCHJOB", "a" * 5000, "zzzz0000zzzz", "..%2F..%2Fetc",
                                         "12345678-1234-1234-1234-123456789abc"])
        t0 = time.time()
        code, jid = 0, ""
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=40)
        try:
            try:
                c.request(method, path, body=body, headers=headers)
            except OSError:
                pass  # a refused upload (413) may close before the body is sent; read the answer
            r = c.getresponse()
            text = r.read()
            code = r.status
            if code == 200 and kind in ("raw", "json"):
                jid = json.loads(text).get("job_id", "")
                with lock:
                    recent.append(jid)
                    del recent[:-1000]
        except (OSError, http.client.HTTPException, ValueError):
            pass
        finally:
            c.close()
        outf.write("%.3f\t%s\t%d\t%.3f\t%s\n" % (t0, kind, code, time.time() - t0, jid))

    n = int(rate * secs)
    t0 = time.time() + 0.2
    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as ex:
        # Submit in slices so the queue of pending futures stays small.
        for i in range(n):
            when = t0 + i / rate
            while when - time.time() > 2.0:
                time.sleep(0.5)
            ex.submit(request, rng.choice(kinds), when)
    outf.close()


main()
