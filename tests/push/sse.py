#!/usr/bin/python3
"""Client side of tests/suite_push.sh: Server-Sent Events and Prefer: wait.

  sse.py events URL [LAST_EVENT_ID] [TIMEOUT_S]
      Prints the HTTP status, then one JSON line per event or comment as it
      arrives ({"id", "event", "job", "t"} / {"comment"}), then "EOF" when the
      server ends the stream or "TIMEOUT".
  sse.py latency BASE IMAGE N
      With no worker running: N jobs, a stream open on each; "READY" once
      every stream has its first event (start a worker then); for each job
      the time from its result being stored (finished_ms) to the final
      event's arrival, and the event sequences seen. p50/p90/max in ms.
  sse.py prefer BASE IMAGE N
      N POST /predict with Prefer: wait=30, one after another: total time of
      each, and how many came back final; then N without the header, for
      comparison. Prints p50/p90/max in ms.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


def conn_for(url, timeout):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout), u.path


def events(url, last_id=None, timeout=30.0, out=None):
    """Yields (status, None) first, then dicts per event/comment; ends with {"eof": t}."""
    c, path = conn_for(url, timeout)
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    yield {"status": r.status, "type": r.getheader("Content-Type"), "body": None if r.status == 200 else r.read().decode()}
    if r.status != 200:
        return
    ev = {}
    while True:
        line = r.readline()
        if not line:
            yield {"eof": time.time()}
            return
        line = line.decode().rstrip("\r\n")
        if line == "":
            if "data" in ev:
                ev["t"] = time.time()
                ev["job"] = json.loads(ev.pop("data"))
                yield ev
            ev = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip(), "t": time.time()}
        else:
            k, _, v = line.partition(":")
            ev[k] = v[1:] if v.startswith(" ") else v


def post(base, image, prefer=None):
    c, _ = conn_for(base, 60)
    h = {"Content-Type": "image/png" if image.endswith(".png") else "image/jpeg"}
    if prefer:
        h["Prefer"] = prefer
    body = open(image, "rb").read()
    t0 = time.time()
    c.request("POST", "/predict", body=body, headers=h)
    r = c.getresponse()
    data = json.loads(r.read())
    return r.status, r.getheader("Preference-Applied"), data, time.time() - t0


def pct(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return "p50 %.1f ms, p90 %.1f ms, max %.1f ms over %d" % (q(0.5), q(0.9), xs[-1], len(xs))


def cmd_events(url, last_id=None, timeout=30):
    try:
        for e in events(url, None if last_id in (None, "") else last_id, float(timeout)):
            print(json.dumps(e), flush=True)
            if "eof" in e:
                print("EOF", flush=True)
    except OSError:  # socket.timeout is an OSError
        print("TIMEOUT", flush=True)


def cmd_latency(base, image, n):
    """Posts n jobs while no worker runs, opens a stream on each, prints READY
    once every stream has its `queued` event (the suite then starts a worker),
    and measures result stored -> final event on every stream."""
    n = int(n)
    lat, seqs, errors, lock = [], [], [], threading.Lock()
    ready = threading.Semaphore(0)
    ids = [post(base, image)[2]["job_id"] for _ in range(n)]

    def run(jid):
        seq, final, first = [], None, True
        try:
            for e in events("%s/job/%s/events" % (base, jid), timeout=120):
                if "event" in e:
                    seq.append("%s:%s" % (e["id"], e["event"]))
                    if e["event"] in ("done", "failed", "expired"):
                        final = e
                if first and "status" not in e:
                    first = False
                    ready.release()
                if "eof" in e:
                    break
            with lock:
                seqs.append(" ".join(seq))
                lat.append(final["t"] * 1000 - final["job"][jid]["finished_ms"])
        except Exception as ex:  # reported, counted as a failure by the suite
            with lock:
                errors.append("%s: %r (events %s)" % (jid, ex, seq))
        finally:
            if first:
                ready.release()

    ts = [threading.Thread(target=run, args=(j,)) for j in ids]
    for t in ts:
        t.start()
    for _ in ids:
        ready.acquire()
    print("READY", flush=True)
    for t in ts:
        t.join()
    kinds = sorted(set(seqs))
    print("event sequences: %s" % "; ".join("%s (x%d)" % (k, seqs.count(k)) for k in kinds))
    print("result stored -> final event received: %s (%d errors%s)" % (
        pct(lat) if lat else "none", len(errors), ": " + errors[0] if errors else ""), flush=True)
    sys.exit(0 if len(lat) == n else 1)


def cmd_prefer(base, image, n):
    tot, final = [], 0
    for _ in range(int(n)):
        st, applied, d, secs = post(base, image, "wait=30")
        tot.append(secs * 1000)
        final += d.get("status") == "done" and d.get("async", {}).get("status") == "done"
    plain = [post(base, image)[3] * 1000 for _ in range(int(n))]
    print("Prefer: wait=30 total latency: %s, %d of %s final" % (pct(tot), final, n))
    print("(the same POST without Prefer, fast answer only: %s)" % pct(plain))
    sys.exit(0 if final == int(n) else 1)


if __name__ == "__main__":
    {"events": cmd_events, "latency": cmd_latency, "prefer": cmd_prefer}[sys.argv[1]](*sys.argv[2:])
