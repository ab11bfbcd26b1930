#!/usr/bin/env bash
# The verified-token cache, per signing algorithm (issue 5, item 5), measured like
# ../shared/bench/run.sh measures the authorized 200 path: gateway pinned to cpu 0,
# wrk -t1 -c64 -d10s and the static nginx upstream (the harness's own conf) on cpu 1.
#
# For each algorithm two loads run through one wrk Lua script:
#   one token   the same token on every request: after the first, cache hits
#   20k tokens  20,000 distinct tokens in rotation: five times the cache, so nearly
#               every request verifies a signature
#
#   cargo build --release --examples && bench/algorithms.sh      (REPS=3 for medians)
# Needs nginx and wrk (../shared/bench/run.sh installs them). Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench}
REPS=${REPS:-1}
DURATION=${DURATION:-10}
DISTINCT=${DISTINCT:-20000}
ALGS=${ALGS:-HS256 EdDSA ES256 RS256}
RUN=$(mktemp -d /tmp/portcullis-algs.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

for tool in nginx wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run ../shared/bench/run.sh once)" >&2; exit 1; }
done
[[ -x $ROOT/target/release/portcullis && -x $ROOT/target/release/examples/mint_tokens ]] ||
  { echo "build first: cargo build --release --examples" >&2; exit 1; }

setsid taskset -c 1 nginx -e "$RUN/upstream-error.log" -p "$RUN/" -c "$HARNESS/conf/upstream.nginx.conf" -g 'daemon off;' &
PIDS+=("$!")

cat >"$RUN/rotate.lua" <<'LUA'
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/api/upload", { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA

wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| algorithm | one token (cache hits) req/s | $DISTINCT tokens (verify each) req/s | p99 one / distinct |"
echo "|---|---:|---:|---|"
for alg in $ALGS; do
  dir="$RUN/$alg"; mkdir -p "$dir"
  sed -e "s|^  key_id: hs256|  key_id: hs256\n  algorithm: $alg\n  keys_dir: $dir/keys|" \
      -e "s|^store: .*|store: sqlite://$dir/bench.db|" "$ROOT/bench/gateway.yaml" >"$dir/gateway.yaml"
  export JWT_SECRET=${JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}
  # The first start makes the key files the tokens are minted with.
  PORT=9104 setsid taskset -c 0 "$ROOT/target/release/portcullis" run -c "$dir/gateway.yaml" >"$dir/gw.log" 2>&1 &
  gw=$!; PIDS+=("$gw")
  wait_up 9104 || { cat "$dir/gw.log"; exit 1; }
  "$ROOT/target/release/examples/mint_tokens" "$dir/gateway.yaml" 1 creator >"$dir/one.txt"
  "$ROOT/target/release/examples/mint_tokens" "$dir/gateway.yaml" "$DISTINCT" creator >"$dir/many.txt"
  row=("$alg")
  p99s=()
  for set in one many; do
    rates=(); p99=""
    for rep in $(seq "$REPS"); do
      TOKENS="$dir/$set.txt" taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" --latency -s "$RUN/rotate.lua" \
        "http://127.0.0.1:9104/api/upload" >"$dir/wrk-$set-$rep.txt"
      grep -q "Non-2xx" "$dir/wrk-$set-$rep.txt" && { echo "$alg/$set: non-2xx answers" >&2; cat "$dir/wrk-$set-$rep.txt" >&2; exit 1; }
      rates+=("$(awk '/Requests\/sec/ {printf "%d", $2}' "$dir/wrk-$set-$rep.txt")")
      p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk-$set-$rep.txt")
    done
    row+=("$(printf '%s\n' "${rates[@]}" | median)")
    p99s+=("$p99")
  done
  echo "| ${row[0]} | ${row[1]} | ${row[2]} | ${p99s[0]} / ${p99s[1]} |"
  kill "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true
done
