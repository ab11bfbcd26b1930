#!/usr/bin/env python3
"""Issue 7's "auth module active" condition, as a gateway command for ../shared/bench/run.sh.

Runs the release `portcullis` with bench/gateway.yaml's routes and keys plus the auth
module's endpoints, its store already holding REVOKED (100 000) revoked access-token
`jti`s, and drives LOGINS_PER_S (20) logins a second against it while the harness's
wrk load runs. Compare the 200-path rate with a plain bench/gateway.yaml run:

    cargo build --release
    cd ../shared/bench
    GATEWAY_PORT=9104 PEERS=gateway REPS=3 \\
    GATEWAY_CMD='exec /path/to/portcullis/scripts/auth_load.py' ./run.sh

The revocations are written the way `Store::revoke_jti` writes them (a `revoked_jtis`
row plus a `jti` event) straight into a fresh SQLite store, since 100 000 logouts
through the HTTP API would take minutes; the gateway then loads them at start-up like
any other revocation. Before handing over to the harness the script checks that a
token carrying a seeded `jti` is refused, so the set really is in force.

The login driver (DRIVERS connections, since one login takes longer than 1/20 s) pins
itself to CPU 1 (the harness's load CPU, beside wrk) so that the gateway's core pays
only for what the gateway does: an Argon2id hash per login.
PORTCULLIS_BIN names another binary than target/release/portcullis.
Loopback only; the driver stops when the gateway exits or after MAX_SECONDS (1800).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PORTCULLIS_BIN", os.path.join(ROOT, "target", "release", "portcullis"))
PORT = int(os.environ.get("GATEWAY_PORT", "9104"))
ADMIN_PORT = int(os.environ.get("ADMIN_PORT", "9190"))
REVOKED = int(os.environ.get("REVOKED", "100000"))
LOGINS_PER_S = float(os.environ.get("LOGINS_PER_S", "20"))
MAX_SECONDS = int(os.environ.get("MAX_SECONDS", "1800"))
LOAD_CPU = int(os.environ.get("LOAD_CPU", "1"))
DRIVERS = int(os.environ.get("DRIVERS", "4"))
EMAIL, PASSWORD = "load@bench.test", "bench-password-1"

# bench/gateway.yaml plus the auth endpoints (login is not rate limited away: every
# login must cost the gateway a real password check).
CONFIG = """
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
store: sqlite://data/bench.db
access_log: false
upstreams:
  app: {{ addrs: ["127.0.0.1:9001"] }}
auth:
  issuer: https://bench.portcullis.test
  audience: api
  key_id: hs256
  rate_limits: {{ login: 1000000/min, login_per_email: 1000000/min }}
roles: [viewer, creator, admin]
routes:
  - {{ path: /api/auth/**, auth: none }}
  - {{ path: /api/upload/**, upstream: app, roles: [admin, creator] }}
  - {{ path: /**, upstream: app }}
"""


def log(msg):
    print(f"auth_load: {msg}", file=sys.stderr, flush=True)


def hs256(secret, claims):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    part = lambda obj: b64(json.dumps(obj, separators=(",", ":")).encode())
    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": "hs256"}) + "." + part(claims)
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


def wait_port(port, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"auth_load: portcullis exited with {proc.returncode} during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"auth_load: nothing listening on 127.0.0.1:{port} after {seconds} s")


def seed(db, now):
    """Revokes REVOKED random jtis as `Store::revoke_jti` does; returns one of them."""
    jtis = [secrets.token_hex(16) for _ in range(REVOKED)]
    until = now + 3600
    with sqlite3.connect(db) as conn:
        (seq,) = conn.execute("SELECT seq FROM revocation_clock WHERE id = 1").fetchone()
        conn.executemany("INSERT INTO revoked_jtis (jti, expires_at) VALUES (?, ?)",
                         ((j, until) for j in jtis))
        conn.executemany(
            "INSERT INTO revocation_events (seq, kind, subject, effective_at, expires_at) "
            "VALUES (?, 'jti', ?, ?, ?)",
            ((seq + 1 + i, j, until, until) for i, j in enumerate(jtis)))
        conn.execute("UPDATE revocation_clock SET seq = ? WHERE id = 1", (seq + len(jtis),))
    return jtis[0] if jtis else None


def status(port, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST" if body else "GET", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def drive(gateway, deadline):
    """LOGINS_PER_S logins a second, spread over DRIVERS keep-alive connections (one
    login takes longer than 1/20 s), until the gateway exits or time is up."""
    os.sched_setaffinity(0, {LOAD_CPU})
    counts, lock, started = Counter(), threading.Lock(), time.monotonic()
    behind = [0]

    def one(offset):
        body = json.dumps({"email": EMAIL, "password": PASSWORD})
        headers = {"content-type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        tick = DRIVERS / LOGINS_PER_S
        next_at = time.monotonic() + offset * tick / DRIVERS
        while gateway.poll() is None and time.time() < deadline:
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                with lock:
                    behind[0] += 1
                next_at = time.monotonic()  # behind schedule: do not burst to catch up
            next_at += tick
            try:
                conn.request("POST", "/api/auth/login", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = "error"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
            with lock:
                counts[status] += 1
                if sum(counts.values()) % int(10 * LOGINS_PER_S) == 0:
                    log(f"{sum(counts.values())} logins, gateway RSS {rss_kib(gateway.pid)} KiB")

    drivers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(DRIVERS)]
    for d in drivers:
        d.start()
    for d in drivers:
        d.join(timeout=max(0, deadline - time.time()) + 15)
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    log(f"logins: {dict(counts)} in {elapsed:.0f} s = {total / max(elapsed, 1e-9):.1f}/s "
        f"({behind[0]} started late); gateway RSS {rss_kib(gateway.pid)} KiB")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return "?"


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run `cargo build --release` first")
    secret = os.environ.get("JWT_SECRET")
    if not secret:
        sys.exit("auth_load: JWT_SECRET must be set (the harness exports it)")
    dir_ = tempfile.mkdtemp(prefix="portcullis-auth-load-")
    config = os.path.join(dir_, "gateway.yaml")
    with open(config, "w") as f:
        f.write(CONFIG.format(port=PORT, admin=ADMIN_PORT))
    env = dict(os.environ, PORTCULLIS_LOG=os.environ.get("PORTCULLIS_LOG", "warn"))
    # `user add` creates and migrates the store, and the account the driver logs in with.
    subprocess.run([BIN, "user", "-c", config, "add", "--email", EMAIL, "--role", "viewer",
                    "--password-stdin"], input=PASSWORD + "\n", text=True, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    now = int(time.time())
    revoked_jti = seed(os.path.join(dir_, "data", "bench.db"), now)
    log(f"seeded {REVOKED} revoked jtis in {dir_}")

    gateway = subprocess.Popen([BIN, "run", "-c", config], env=env)
    signal.signal(signal.SIGTERM, lambda *_: gateway.terminate())
    try:
        wait_port(PORT, gateway)
        claims = {"iss": "https://bench.portcullis.test", "aud": "api", "sub": "user-42",
                  "role": "creator", "iat": now, "nbf": now, "exp": now + 600}
        fresh = hs256(secret, dict(claims, jti=secrets.token_hex(16)))
        revoked = hs256(secret, dict(claims, jti=revoked_jti or secrets.token_hex(16)))
        auth = lambda t: {"Authorization": f"Bearer {t}"}
        got = (status(PORT, "/api/upload", auth(fresh)), status(PORT, "/api/upload", auth(revoked)),
               status(PORT, "/api/auth/login", {"content-type": "application/json"},
                      json.dumps({"email": EMAIL, "password": PASSWORD})))
        if got != (200, 401 if revoked_jti else 200, 200):
            gateway.terminate()
            sys.exit(f"auth_load: fresh/revoked token/login answered {got}, expected (200, 401, 200)")
        log("revocations in force, login works; driving logins")
        if LOGINS_PER_S > 0:
            drive(gateway, time.time() + MAX_SECONDS)
        else:
            gateway.wait(timeout=MAX_SECONDS)
        gateway.terminate()
        gateway.wait(timeout=10)
    finally:
        if gateway.poll() is None:
            gateway.kill()
        shutil.rmtree(dir_, ignore_errors=True)


if __name__ == "__main__":
    main()
