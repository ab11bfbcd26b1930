#!/usr/bin/env bash
# User-space instructions per request on the harness's three paths, counted by
# callgrind: repeatable on a noisy shared machine, where req/s is not.
#
#   cargo build --release && bench/instructions.sh [requests per scenario, default 2000]
#   PORTCULLIS_BIN=/path/to/portcullis bench/instructions.sh   # another build
#   CONFIG=bench/gateway-access-log.yaml bench/instructions.sh  # another mode
#
# Starts the harness's static nginx upstream on 127.0.0.1:9001 (../shared/bench/conf),
# the release gateway with bench/gateway.yaml under callgrind, warms each scenario up,
# zeroes the counters, sends N keep-alive requests over 4 connections and reads the
# counters back. Prints one line per scenario: name, status, instructions/request.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$HERE/../shared/bench}
N=${1:-2000}
RUN=$(mktemp -d /tmp/instructions.XXXXXX)
chmod 755 "$RUN"
export JWT_SECRET=6b09bf5e6c5376aa3ace64777999bb5eaf5eb733f89b56aa2ea61e5056da2810  # openssl rand -hex 32: the gateway refuses guessable secrets
for port in 9001 9104 9190; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken (a gateway or upstream left running?)" >&2
    exit 1
  fi
done
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

nginx -e "$RUN/upstream-error.log" -p "$RUN/" -c "$BENCH/conf/upstream.nginx.conf" -g 'daemon off;' &
pids+=($!)
rm -f "$HERE"/data/bench.db*
(cd "$HERE" && exec valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.out" \
  "${PORTCULLIS_BIN:-target/release/portcullis}" run -c "${CONFIG:-bench/gateway.yaml}" >"$RUN/gateway.log" 2>&1) &
pids+=($!)
for _ in $(seq 1 300); do
  curl -s -o /dev/null --max-time 1 http://127.0.0.1:9104/ && break
  sleep 0.2
done
gw=$(pgrep -f "callgrind-out-file=$RUN/cg.out" | head -1)

python3 - "$N" "$gw" "$RUN" <<'PY'
import base64, hashlib, hmac, http.client, json, os, subprocess, sys, threading, time, glob
n, gw, run = int(sys.argv[1]), sys.argv[2], sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
part = lambda o: b64(json.dumps(o, separators=(",", ":")).encode())
def mint(role, secret=os.environ["JWT_SECRET"]):
    now = int(time.time())
    c = {"iss": "https://bench.portcullis.test", "aud": "api", "sub": "user-42", "role": role,
         "iat": now, "nbf": now, "jti": "instructions-" + role, "exp": now + 3600}
    s = part({"alg": "HS256", "typ": "JWT", "kid": "hs256"}) + "." + part(c)
    return s + "." + b64(hmac.new(secret.encode(), s.encode(), hashlib.sha256).digest())
scenarios = [("authorized", mint("creator"), 200), ("bad signature", mint("creator", "wrong"), 401),
             ("wrong role", mint("viewer"), 403)]
def drive(token, want, count):
    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", 9104, timeout=60)
        for _ in range(k):
            c.request("GET", "/api/upload", headers={"Authorization": "Bearer " + token})
            r = c.getresponse(); r.read()
            assert r.status == want, (r.status, want)
        c.close()
    ts = [threading.Thread(target=worker, args=(count // 4,)) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
def total():
    files = sorted(glob.glob(run + "/cg.out*"), key=os.path.getmtime)
    for line in open(files[-1]):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
for name, token, want in scenarios:
    drive(token, want, 400)
    subprocess.run(["callgrind_control", "-z", gw], check=True, capture_output=True)
    drive(token, want, n)
    subprocess.run(["callgrind_control", "-d", gw], check=True, capture_output=True)
    print(f"{name:14} {want}  {total() / n:,.0f} instructions/request")
PY
