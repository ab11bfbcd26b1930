#!/usr/bin/env bash
# CPU time per request of one gateway binary on the harness's three paths: the
# gateway pinned to cpu 0, the harness's nginx upstream and wrk (-t1 -c64, 6 s) on
# cpu 1; user and kernel time read from /proc/PID/stat around each run.
#
#   cargo build --release && bench/cpu_per_request.sh target/release/portcullis
#
# Prints per scenario: status, req/s, user µs/request, kernel µs/request, CPU share.
# req/s swings on a noisy VM; the µs per request are steadier. Needs nginx and wrk
# (../shared/bench/run.sh installs them).
set -u
BIN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")/.." && pwd)
export JWT_SECRET=bfe09ba096d4f8970263780902e7e45aabe2d9397de58cbaa4b4650fb40729a4  # openssl rand -hex 32: the gateway refuses guessable secrets
B=${BENCH:-$HERE/../shared/bench}
mint() { python3 - "$1" "$2" <<'PY'
import base64,hashlib,hmac,json,sys,time
b=lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
p=lambda o: b(json.dumps(o,separators=(",",":")).encode())
now=int(time.time())
c={"iss":"https://bench.portcullis.test","aud":"api","sub":"user-42","role":sys.argv[2],"iat":now,"nbf":now,"jti":"cpu-"+sys.argv[2],"exp":now+3600}
s=p({"alg":"HS256","typ":"JWT","kid":"hs256"})+"."+p(c)
print(s+"."+b(hmac.new(sys.argv[1].encode(),s.encode(),hashlib.sha256).digest()))
PY
}
RUN=$(mktemp -d); chmod 755 $RUN
taskset -c 1 nginx -e $RUN/err.log -p $RUN/ -c $B/conf/upstream.nginx.conf -g 'daemon off;' & NG=$!
rm -f "$HERE"/data/bench.db*
(cd "$HERE" && PORT=9104 exec taskset -c 0 $BIN run -c bench/gateway.yaml >$RUN/gw.log 2>&1) & 
sleep 2; GW=$(pgrep -f "$BIN run" | head -1)
for sc in "200 $(mint $JWT_SECRET creator)" "401 $(mint wrongsecret creator)" "403 $(mint $JWT_SECRET viewer)"; do
  set -- $sc
  taskset -c 1 wrk -t1 -c64 -d2s -H "Authorization: Bearer $2" http://127.0.0.1:9104/api/upload >/dev/null
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$GW/stat)
  out=$(taskset -c 1 wrk -t1 -c64 -d6s -H "Authorization: Bearer $2" http://127.0.0.1:9104/api/upload)
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$GW/stat)
  total=$(echo "$out" | awk '/requests in/{print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  python3 -c "
# /proc stat times are in 10 ms ticks (CLK_TCK 100).
u=($u1-$u0)*10000; s=($s1-$s0)*10000; n=$total
print(f'$1  {float(\"$rps\"):>9,.0f} req/s  user {u/n:5.1f} us  sys {s/n:5.1f} us  cpu {(u+s)/6e6*100:5.1f}%')"
done
kill $GW $NG 2>/dev/null; wait 2>/dev/null
