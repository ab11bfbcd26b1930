#!/usr/bin/env bash
# Starts the gateway for ../shared/bench in the mode the harness asks for:
#   GATEWAY_CMD='exec bench/gateway.sh' [ACCESS_LOG=on] [TLS=on] ../shared/bench/run.sh
# bench/gateway.yaml (nobody logs), bench/gateway-access-log.yaml (ACCESS_LOG=on) or
# bench/gateway-tls.yaml (TLS=on, access log on). PORTCULLIS_BIN picks the binary.
set -euo pipefail
cd "$(dirname "$0")"
bin=${PORTCULLIS_BIN:-../target/release/portcullis}
port=${GATEWAY_PORT:-9104}
if [[ ${BENCH_TLS:-off} == on ]]; then
  [[ ${BENCH_ACCESS_LOG:-off} == on ]] || echo "bench/gateway.sh: TLS=on runs with the access log on" >&2
  mkdir -p data
  ln -sf "$BENCH_TLS_CERT" data/tls-cert.pem
  ln -sf "$BENCH_TLS_KEY" data/tls-key.pem
  # The copy sits in data/, against which its paths are resolved: the links are beside it.
  sed -e "s/127.0.0.1:9104 /127.0.0.1:$port /" -e "s|data/tls-|tls-|" gateway-tls.yaml >data/gateway-tls.yaml
  exec "$bin" run -c data/gateway-tls.yaml
elif [[ ${BENCH_ACCESS_LOG:-off} == on ]]; then
  PORT=$port exec "$bin" run -c gateway-access-log.yaml
else
  PORT=$port exec "$bin" run -c gateway.yaml
fi
