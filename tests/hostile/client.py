#!/usr/bin/python3
"""Hostile HTTP clients for tests/suite_hostile.sh (stdlib only, loopback only).

  slowloris HOST PORT COUNT SECONDS [--source ADDR] [--interval S] [--status FILE]
      holds COUNT connections that each send one more header byte every
      interval and never finish their request; a connection the server closes
      is opened again as soon as it is seen closed (at its next byte). Writes
      "open=N opened=N closed=N" to FILE every second; stops after SECONDS
      or on SIGTERM.
  trickle-headers HOST PORT INTERVAL SECONDS
      one connection, one header byte every INTERVAL; prints
      {"closed_after": s, "answer": first bytes of any answer} when the server
      ends it, or {"closed_after": null} if it still stands after SECONDS.
  upload HOST PORT PATH FILE RATE [--type T] [--chunked] [--idle-before S]
      POSTs FILE at RATE bytes/s (0: as fast as the socket takes it), reading
      the answer whenever one arrives, even mid-upload; prints
      {"status", "body", "sent", "size", "secs"} (status null: no answer).
      With --idle-before, the connection first carries a GET /health, then
      stays idle S seconds (keep-alive) before the POST.
"""
import argparse
import json
import os
import resource
import select
import signal
import socket
import sys
import time

LOOPBACK = ("127.", "::1", "localhost")
MAX_COUNT = 5000
MAX_SECONDS = 300


def loopback_only(host):
    if not host.startswith(LOOPBACK):
        sys.exit("client.py: loopback addresses only, not " + host)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def slowloris(a):
    loopback_only(a.host)
    count = min(a.count, MAX_COUNT)
    seconds = min(a.seconds, MAX_SECONDS)
    raise_nofile(count + 64)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    line = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
    slots = [None] * count  # (socket, bytes sent, next send time)
    opened = closed = failed = 0
    t_end = time.monotonic() + seconds
    last_status = 0.0

    def connect():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if a.source:
            s.bind((a.source, 0))
        try:
            s.connect((a.host, a.port))
        except BlockingIOError:
            pass
        return s

    while not stop[0] and time.monotonic() < t_end:
        now = time.monotonic()
        for i in range(count):
            slot = slots[i]
            if slot is None:
                try:
                    slots[i] = [connect(), 0, now + a.interval]
                    opened += 1
                except OSError:
                    failed += 1
                    slots[i] = [None, 0, now + a.interval]
                continue
            s, sent, due = slot
            if due > now:
                continue
            if s is None:
                slots[i] = None
                continue
            try:
                # One byte; a closed connection shows as an error, as EOF or
                # as an answer (the server's last word before it closes).
                try:
                    s.recv(4096)
                    raise ConnectionResetError
                except BlockingIOError:
                    pass
                s.send(line[sent:sent + 1])
                slot[1] = sent + 1
                slot[2] = now + a.interval
            except OSError:
                closed += 1
                s.close()
                slots[i] = None  # opened again at once
        if a.status and now - last_status >= 1:
            last_status = now
            held = sum(1 for x in slots if x and x[0] is not None)
            with open(a.status + ".tmp", "w") as f:
                f.write("open=%d opened=%d closed=%d failed=%d\n" % (held, opened, closed, failed))
            os.replace(a.status + ".tmp", a.status)
        time.sleep(0.05)
    for x in slots:
        if x and x[0] is not None:
            x[0].close()


def trickle_headers(a):
    loopback_only(a.host)
    line = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
    s = socket.create_connection((a.host, a.port), timeout=5)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < min(a.seconds, MAX_SECONDS):
        try:
            r, _, _ = select.select([s], [], [], a.interval)
            if r:
                data = s.recv(4096)
                print(json.dumps({"closed_after": round(time.monotonic() - t0, 2),
                                  "answer": data[:200].decode("latin-1")}))
                return
            s.send(line[i:i + 1])
            i += 1
        except OSError as e:
            print(json.dumps({"closed_after": round(time.monotonic() - t0, 2), "answer": str(e)}))
            return
    print(json.dumps({"closed_after": None}))


def parse_answer(data):
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, data[:300].decode("latin-1")
    return status, body.decode("utf-8", "replace")


def complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n") if sep else []:
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def keep_alive_first(s, idle):
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not complete(first):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the server closed the connection after GET /health")
        first += chunk
    time.sleep(idle)


def upload(a):
    loopback_only(a.host)
    data = open(a.file, "rb").read()
    hdr = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nConnection: close\r\n" % (a.path, a.type)
    hdr += "Transfer-Encoding: chunked\r\n" if a.chunked else "Content-Length: %d\r\n" % len(data)
    s = socket.create_connection((a.host, a.port), timeout=10)
    if a.idle_before > 0:
        keep_alive_first(s, a.idle_before)
    s.sendall((hdr + "\r\n").encode())
    t0 = time.monotonic()
    sent, answer = 0, b""
    step = 16384 if a.rate <= 0 else max(1, min(16384, int(a.rate / 4)))
    deadline = t0 + MAX_SECONDS

    def read_some(wait):
        nonlocal answer
        r, _, _ = select.select([s], [], [], wait)
        if not r:
            return False
        try:
            chunk = s.recv(65536)
        except OSError:
            return True
        answer += chunk
        return chunk == b""

    ended = False
    while sent < len(data) and time.monotonic() < deadline:
        if read_some(0) or answer:
            break
        piece = data[sent:sent + step]
        out = (b"%x\r\n" % len(piece)) + piece + b"\r\n" if a.chunked else piece
        try:
            s.sendall(out)
        except OSError:
            ended = True
            break
        sent += len(piece)
        if a.rate > 0:
            time.sleep(len(piece) / a.rate)
    if not answer and not ended and sent >= len(data) and a.chunked:
        try:
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
    # The rest of the answer: complete at Content-Length, or at end of stream.
    end = time.monotonic() + 15
    while not complete(answer) and time.monotonic() < end:
        if read_some(1):
            break
    status, body = parse_answer(answer) if answer else (None, "")
    print(json.dumps({"status": status, "body": body, "sent": sent, "size": len(data),
                      "secs": round(time.monotonic() - t0, 3)}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("slowloris")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("count", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--source")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--status")
    p = sub.add_parser("trickle-headers")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("interval", type=float)
    p.add_argument("seconds", type=float)
    p = sub.add_parser("upload")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("file")
    p.add_argument("rate", type=float)
    p.add_argument("--type", default="application/octet-stream")
    p.add_argument("--chunked", action="store_true")
    p.add_argument("--idle-before", type=float, default=0.0)
    a = ap.parse_args()
    {"slowloris": slowloris, "trickle-headers": trickle_headers, "upload": upload}[a.cmd](a)


if __name__ == "__main__":
    main()
