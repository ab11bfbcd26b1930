#!/usr/bin/env bash
# The 200 path's latency distribution next to how busy the proxy's own thread was:
# the proxy pinned to cpu 0, the harness's nginx upstream and wrk (-t1 -c64, 8 s) on
# cpu 1, as in ../shared/bench/run.sh. Says which core was the bottleneck: a proxy
# thread near 100 % with few sleeps is; one with spare CPU leaves it to cpu 1.
#
#   bench/tail.sh target/release/portcullis     # the gateway
#   bench/tail.sh nginx                         # the harness's nginx peer (no auth)
#
# Prints req/s, wrk's 50/75/90/99 %, the busiest proxy thread's CPU share and how
# often it went to sleep (voluntary context switches). Needs nginx and wrk.
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
B=${BENCH:-$HERE/../shared/bench}
export JWT_SECRET=7e40a625bb6d09dcf8e299819b216529b7895469d3566eac1c048d571923eeee  # openssl rand -hex 32: the gateway refuses guessable secrets
TOK=$(source <(sed -n '/^mint()/,/^}/p' "$HERE/bench/cpu_per_request.sh") && mint "$JWT_SECRET" creator)
RUN=$(mktemp -d); chmod 755 "$RUN"; mkdir -m 755 "$RUN/proxy"
taskset -c 1 nginx -e "$RUN/err.log" -p "$RUN/" -c "$B/conf/upstream.nginx.conf" -g 'daemon off;' & UP=$!
if [[ $1 == nginx ]]; then
  PORT=9101
  taskset -c 0 nginx -e "$RUN/proxy/err.log" -p "$RUN/proxy/" -c "$B/conf/proxy.nginx.conf" -g 'daemon off;' & PX=$!
  sleep 2; PID=$(pgrep -P $PX | head -1)
else
  PORT=9104 BIN=$(realpath "$1")
  rm -f "$HERE"/data/bench.db*
  (cd "$HERE" && PORT=9104 exec taskset -c 0 "$BIN" run -c bench/gateway.yaml >"$RUN/gw.log" 2>&1) & PX=$!
  sleep 2; PID=$PX
fi
URL=http://127.0.0.1:$PORT/api/upload
taskset -c 1 wrk -t1 -c64 -d2s -H "Authorization: Bearer $TOK" "$URL" >/dev/null
# tid -> CPU ticks and voluntary switches, for every thread of the proxy process.
snap() { for t in /proc/$PID/task/*; do
  echo "${t##*/} $(awk '{print $14 + $15}' "$t/stat") $(awk '/^voluntary_ctxt/{print $2}' "$t/status")"
done | sort; }
snap >"$RUN/before"
taskset -c 1 wrk -t1 -c64 -d8s --latency -H "Authorization: Bearer $TOK" "$URL" >"$RUN/wrk.txt"
snap >"$RUN/after"
read -r ticks sleeps < <(join "$RUN/before" "$RUN/after" | awk '{print $4 - $2, $5 - $3}' | sort -n | tail -1)
rps=$(awk '/Requests\/sec/{print $2}' "$RUN/wrk.txt")
pct=$(awk '/Latency Distribution/{on=1; next} on && NF==2 {printf "%s %s  ", $1, $2} on && NF!=2 {on=0}' "$RUN/wrk.txt")
# /proc stat times are 10 ms ticks: 800 ticks = one whole core for 8 s.
echo "$1: $rps req/s  $pct proxy thread $((ticks * 100 / 800)) % CPU, $((sleeps / 8)) sleeps/s"
kill $PX $UP 2>/dev/null; wait 2>/dev/null
rm -rf "$RUN"
