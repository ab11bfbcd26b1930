#!/usr/bin/env bash
# The h2 scenario (docs/performance.md): h2load over TLS 1.3 (h2 by ALPN) against nginx
# (`http2`, no auth, buffered JSON access log) and the gateway (bench/gateway-tls.yaml: the
# 200 path, JWT verified, role checked, X-User-Id injected, access log on), both in front
# of the harness's static upstream on 127.0.0.1:9001. Peers pinned to core 0, h2load and
# the upstream to core 1; rounds interleaved.
#
#   cargo build --release && bench/h2load.sh [rounds, default 3]
#   N=30000 PORTCULLIS_BIN=/path/to/portcullis bench/h2load.sh 1    # a quick look
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$HERE/../shared/bench}
BIN=$(realpath "${PORTCULLIS_BIN:-$HERE/target/release/portcullis}")
ROUNDS=${1:-3}
R=$(mktemp -d /tmp/h2run.XXXX); chmod 755 $R; cd $R
export JWT_SECRET=$(openssl rand -hex 32)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls-key.pem -out tls-cert.pem -days 1 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null
cat > nginx.conf <<N
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
  log_format bench_json escape=json '{"time":"\$time_iso8601","id":"\$request_id","method":"\$request_method","uri":"\$request_uri","status":\$status,"request_time":\$request_time}';
  access_log access.log bench_json buffer=64k flush=1s;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:9001; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:9201 ssl http2 backlog=4096;
    ssl_certificate tls-cert.pem; ssl_certificate_key tls-key.pem; ssl_protocols TLSv1.3;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
N
sed -e "s/127.0.0.1:9104 /127.0.0.1:9202 /" -e "s|data/tls-|tls-|" -e "s|store: sqlite://data/bench.db|store: sqlite://bench.db|" "$HERE/bench/gateway-tls.yaml" | sed -e "s/127.0.0.1:9114/127.0.0.1:9214/" -e "s/127.0.0.1:9190/127.0.0.1:9290/" > gateway.yaml
taskset -c 1 nginx -p $R/ -c "$BENCH/conf/upstream.nginx.conf" -g "daemon off;" &
UP=$!
taskset -c 0 nginx -p $R/ -c $R/nginx.conf -g 'daemon off;' &
NG=$!
taskset -c 0 "$BIN" run -c gateway.yaml > gw.log 2>&1 &
GW=$!
trap 'kill $UP $NG $GW 2>/dev/null' EXIT
sleep 2
T=$("$BIN" token -c gateway.yaml --sub bench-creator --role creator --ttl 15m 2>/dev/null | tail -1)
curl -sk --http2 -o /dev/null -w 'nginx %{http_version} %{http_code}\n' https://127.0.0.1:9201/api/upload
curl -sk --http2 -o /dev/null -w 'gateway %{http_version} %{http_code}\n' -H "Authorization: Bearer $T" https://127.0.0.1:9202/api/upload
for r in $(seq $ROUNDS); do
  for peer in nginx:9201 gateway:9202; do
    name=${peer%%:*}; port=${peer##*:}
    out=$(taskset -c 1 h2load -n ${N:-300000} -c 64 -m 10 -t 1 -H "authorization: Bearer $T" https://127.0.0.1:$port/api/upload 2>&1)
    rps=$(echo "$out" | awk '/^finished in/{print $4}')
    ok=$(echo "$out" | awk '/^status codes:/{print $3, $4}')
    echo "round $r $name $rps req/s ($ok)"
  done
done
