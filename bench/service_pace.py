#!/usr/bin/python3
"""Open-loop pacer for bench/service.sh: sends N requests at a fixed rate
(request i leaves at t0 + i/rate, whatever happened to the others, so a slow
answer cannot hold back the next request and hide latency), each on its own
connection from a thread pool, and prints one JSON object: n, ok, errors,
codes, p50_ms, p99_ms, mean_ms, max_ms, rate (achieved). Latency is counted
from the scheduled send time to the last byte of the answer.

usage: service_pace.py URL BODY_FILE CONTENT_TYPE RATE N
"""
import concurrent.futures
import http.client
import json
import sys
import time
import urllib.parse


def one(url, body, ctype, when):
    delay = when - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        c.request("POST", u.path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        r.read()
        code = r.status
    except OSError:
        code = 0
    finally:
        c.close()
    return code, (time.perf_counter() - when) * 1000.0


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    url, path, ctype, rate, n = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    body = open(path, "rb").read()
    t0 = time.perf_counter() + 0.2
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
        futs = [ex.submit(one, url, body, ctype, t0 + i / rate) for i in range(n)]
        res = [f.result() for f in futs]
    elapsed = time.perf_counter() - t0
    lat = [ms for code, ms in res if code == 200]
    codes = {}
    for code, _ in res:
        codes[str(code)] = codes.get(str(code), 0) + 1
    print(json.dumps({
        "n": n, "ok": len(lat), "errors": n - len(lat), "codes": codes,
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
        "mean_ms": sum(lat) / len(lat) if lat else None, "max_ms": max(lat) if lat else None,
        "rate": n / elapsed,
    }))


main()
