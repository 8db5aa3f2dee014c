#!/usr/bin/python3
"""hooks.py LOG SECRET CMD ...: reads the listener's log (listener.py).

  count ID             requests received with webhook-id ID
  verify ID            checks every request of ID: Standard Webhooks headers,
                       signature v1 = base64 HMAC-SHA256(key, "id.timestamp.body")
                       with key = base64-decoded SECRET after "whsec_", timestamp
                       within 5 minutes, body = {"ID": job}; prints the last body
  gaps ID              seconds between successive requests of ID, one per line
  latency ID...        per id: first 2xx-path arrival minus the job's finished_ms;
                       prints "n=.. p50=.. p90=.. max=.." (ms); exit 1 if one is missing
"""
import base64
import hashlib
import hmac
import json
import sys
import time

log_path, secret, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
key = base64.b64decode(secret[len("whsec_"):])
reqs = []
try:
    with open(log_path) as f:
        reqs = [json.loads(line) for line in f if line.strip()]
except FileNotFoundError:
    pass


def of(hid):
    return [r for r in reqs if r["headers"].get("webhook-id") == hid]


if cmd == "count":
    print(len(of(args[0])))
elif cmd == "verify":
    rs = of(args[0])
    if not rs:
        sys.exit("no request for %s" % args[0])
    for r in rs:
        h = r["headers"]
        body = base64.b64decode(r["body_b64"])
        ts = h.get("webhook-timestamp", "")
        want = base64.b64encode(hmac.new(key, b"%s.%s.%s" % (args[0].encode(), ts.encode(), body),
                                         hashlib.sha256).digest()).decode()
        sigs = [s.split(",", 1)[1] for s in h.get("webhook-signature", "").split() if s.startswith("v1,")]
        if not any(hmac.compare_digest(s, want) for s in sigs):
            sys.exit("bad signature %r (want v1,%s)" % (h.get("webhook-signature"), want))
        if abs(time.time() - int(ts)) > 300:
            sys.exit("timestamp %s is off" % ts)
        if not h.get("content-type", "").startswith("application/json"):
            sys.exit("content-type %r" % h.get("content-type"))
        job = json.loads(body)
        if list(job) != [args[0]]:
            sys.exit("body is not {\"%s\": job}: %s" % (args[0], body[:200]))
    print(base64.b64decode(rs[-1]["body_b64"]).decode())
elif cmd == "gaps":
    ts = [r["t"] for r in of(args[0])]
    for a, b in zip(ts, ts[1:]):
        print("%.3f" % ((b - a) / 1000.0))
elif cmd == "latency":
    lat = []
    for hid in args:
        rs = of(hid)
        if not rs:
            sys.exit("no webhook for %s" % hid)
        job = json.loads(base64.b64decode(rs[0]["body_b64"]))[hid]
        lat.append(rs[0]["t"] - job["finished_ms"])
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print("n=%d p50=%.1f p90=%.1f max=%.1f" % (len(lat), q(0.5), q(0.9), lat[-1]))
else:
    sys.exit("unknown command " + cmd)
