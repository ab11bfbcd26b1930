#!/usr/bin/env python3
"""Soak test: mixed traffic against a real gateway on loopback, sampling its memory.

Starts the release `echo` upstream and `portcullis` with a throw-away config and
store, drives authorized, unauthorized, forbidden, login and refresh traffic for
DURATION seconds from a few threads, and samples the gateway's RSS and open file
descriptors every 10 s. Fails (exit 1) if any 5xx appeared or the average RSS of
the last quarter of the run exceeds the first quarter's by more than 25 % plus
40 MiB (two Argon2id hashes in flight).

    cargo build --release && scripts/soak.py            # 10 minutes
    DURATION=60 scripts/soak.py                          # a quick look

Loopback only, bounded in time: every loop checks the deadline.
"""

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# BIN_DIR: another build of the two binaries, to compare builds in one run.
BIN = os.environ.get("BIN_DIR") or os.path.join(ROOT, "target", "release")
DURATION = int(os.environ.get("DURATION", "600"))
THREADS = int(os.environ.get("THREADS", "4"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(dir_):
    upstream, listen, admin = free_port(), free_port(), free_port()
    config = f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
store: sqlite://data/soak.db
access_log: false
upstreams:
  app: {{ addrs: ["127.0.0.1:{upstream}"] }}
auth:
  issuer: https://soak.test
  audience: api
  rate_limits: {{ login: 100000/min, login_per_email: 100000/min, refresh: 100000/min, signup: 100000/min }}
roles: [viewer, admin]
routes:
  - {{ path: /api/auth/**, auth: none }}
  - {{ path: /api/admin/**, upstream: app, roles: [admin] }}
  - {{ path: /api/**, upstream: app }}
"""
    path = os.path.join(dir_, "gateway.yaml")
    with open(path, "w") as f:
        f.write(config)
    env = dict(os.environ, JWT_SECRET=secrets.token_hex(32), PORTCULLIS_LOG="warn")
    echo = subprocess.Popen([os.path.join(BIN, "echo"), f"127.0.0.1:{upstream}"],
                            stdout=subprocess.DEVNULL)
    gw = subprocess.Popen([os.path.join(BIN, "portcullis"), "run", "-c", path], env=env,
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(dir_, "stderr"), "w"))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    token = subprocess.run([os.path.join(BIN, "portcullis"), "token", "-c", path, "--sub", "soak",
                            "--role", "viewer", "--ttl", "15m"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    return echo, gw, listen, token


def call(conn, method, path, headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp.getheader("set-cookie"), data


def worker(port, token, deadline, statuses, lock):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    email = f"soak-{secrets.token_hex(4)}@example.com"
    creds = json.dumps({"email": email, "password": "soak-password-1"})
    json_h = {"content-type": "application/json"}
    local = Counter()
    try:
        local[call(conn, "POST", "/api/auth/signup", json_h, creds)[0]] += 1
        cookie = None
        i = 0
        while time.time() < deadline:
            i += 1
            kind = i % 10
            try:
                if kind < 5:
                    status = call(conn, "GET", "/api/items/1", {"Authorization": f"Bearer {token}"})[0]
                elif kind == 5:
                    status = call(conn, "GET", "/api/items/1")[0]
                elif kind == 6:
                    status = call(conn, "GET", "/api/admin/x", {"Authorization": f"Bearer {token}"})[0]
                elif kind == 7:
                    # A bad token of a new shape every time: refusals must not accumulate state.
                    status = call(conn, "GET", "/api/items/1", {"Authorization": f"Bearer x.{i}.y"})[0]
                elif kind == 8 and i % 50 == 8:
                    status, set_cookie, _ = call(conn, "POST", "/api/auth/login", json_h, creds)
                    cookie = set_cookie.split(";")[0] if set_cookie else None
                elif kind == 9 and cookie:
                    status, set_cookie, _ = call(conn, "POST", "/api/auth/refresh", {**json_h, "Cookie": cookie})
                    cookie = set_cookie.split(";")[0] if set_cookie else None
                else:
                    continue
                local[status] += 1
            except (OSError, http.client.HTTPException):
                local["error"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        with lock:
            statuses.update(local)


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main():
    for b in ("echo", "portcullis"):
        if not os.path.exists(os.path.join(BIN, b)):
            sys.exit(f"{BIN}/{b} missing: run `cargo build --release` first")
    dir_ = tempfile.mkdtemp(prefix="portcullis-soak-")
    echo, gw, port, token = start(dir_)
    statuses, lock = Counter(), threading.Lock()
    deadline = time.time() + DURATION
    threads = [threading.Thread(target=worker, args=(port, token, deadline, statuses, lock))
               for _ in range(THREADS)]
    for t in threads:
        t.start()
    samples = []
    try:
        while time.time() < deadline:
            samples.append((round(DURATION - (deadline - time.time())),) + sample(gw.pid))
            print(f"t={samples[-1][0]:>4}s rss={samples[-1][1]} KiB fds={samples[-1][2]}", flush=True)
            time.sleep(min(10, max(0.1, deadline - time.time())))
        for t in threads:
            t.join(timeout=30)
        samples.append((DURATION,) + sample(gw.pid))
    finally:
        gw.terminate()
        echo.terminate()
        gw.wait(timeout=10)
        echo.wait(timeout=10)
        shutil.rmtree(dir_, ignore_errors=True)
    # The first sample is taken before any traffic; the rest is the steady state.
    steady = samples[1:] or samples
    quarter = max(1, len(steady) // 4)
    early = sum(s[1] for s in steady[:quarter]) / quarter
    late = sum(s[1] for s in steady[-quarter:]) / quarter
    server_errors = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    print(f"requests by status: {dict(sorted(statuses.items(), key=str))}")
    print(f"rss first quarter {early:.0f} KiB, last quarter {late:.0f} KiB ({(late / early - 1) * 100:+.1f} %)")
    print(f"fds first {samples[0][2]}, last {samples[-1][2]}; 5xx: {server_errors}")
    # Argon2id holds 19 MiB per hash in flight, so allow for two hashes' worth of noise.
    if server_errors or late > early * 1.25 + 40 * 1024:
        sys.exit(1)


if __name__ == "__main__":
    main()
