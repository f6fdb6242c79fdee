#!/usr/bin/env bash
# Runs herald-loadtest against one release node on this machine: a private redis-server,
# the mock APNs and FCM (herald-mock-push, accept-all), a `herald serve` pushing to them,
# then the load. Everything listens on 127.0.0.1 and is stopped at the end.
#   scripts/loadtest.sh loadtest/scenarios/steady.toml [herald-loadtest run args…]
#   scripts/loadtest.sh compare [herald-loadtest compare args…]
#   scripts/loadtest.sh ab OLD_HERALD NEW_HERALD ROUNDS [herald-loadtest compare args…]
# KEEP_WORK=1 keeps the logs, the configuration and the pushes the mocks received;
# HERALD_BIN=path runs that herald binary instead of this tree's (to compare two builds);
# NODES=3 runs a cluster of three nodes on the one Redis and spreads the load over their
# gateways (the report then has a line per gateway; `run` only).
# `ab` runs `compare` with the two binaries alternated ROUNDS times — this machine's speed
# drifts, so two builds are only comparable run against run — and prints each build's
# median Herald/baseline ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/loadtest.sh SCENARIO.toml|compare|ab [args…]}
shift

if [ "$scenario" = ab ]; then
  old=${1:?usage: scripts/loadtest.sh ab OLD_HERALD NEW_HERALD ROUNDS [compare args…]}
  new=${2:?missing NEW_HERALD}
  rounds=${3:?missing ROUNDS}
  shift 3
  results=$(mktemp)
  log=$(mktemp)
  for round in $(seq "$rounds"); do
    for build in old new; do
      binary=$old
      [ "$build" = new ] && binary=$new
      ratio=$(HERALD_BIN=$binary "$0" compare "$@" 2>>"$log" | sed -n 's/^herald \/ baseline throughput: //p') || true
      echo "round $round $build ($binary): ratio ${ratio:-failed, see $log}" >&2
      echo "$build ${ratio:-nan}" >>"$results"
    done
  done
  median() { grep "^$1 " "$results" | awk '{print $2}' | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
  echo "median Herald/baseline ratio over $rounds alternated rounds: old $(median old), new $(median new)"
  rm -f "$results"
  exit 0
fi

cargo build --release --locked -p herald-broker -p herald-loadtest -p herald-workers --features herald-workers/mock \
  --bin herald --bin herald-loadtest --bin herald-mock-push
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "logs and configuration kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
# Redis as docs/configuration.md advises a deployment to set it (REDIS_ARGS adds or
# overrides settings, e.g. REDIS_ARGS="--hash-max-listpack-value 64" for Redis's default).
# shellcheck disable=SC2086
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --hash-max-listpack-value 256 --maxmemory-policy noeviction ${REDIS_ARGS:-} \
  --dir "$work" --logfile "$work/redis.log" --daemonize no &
pids+=($!)

apps_per_platform=
[ -f "$scenario" ] && apps_per_platform=$(sed -n 's/^apps_per_platform *= *\([0-9]*\).*/\1/p' "$scenario")
"$bin/herald-mock-push" --dir "$work/mocks" --accept-all --apps-per-platform "${apps_per_platform:-1}" \
  --apns-port 0 --fcm-port 0 --token-port 0 --control-port "$(free_port)" >"$work/apps.toml" 2>"$work/mocks.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/apps.toml" ] && break; sleep 0.1; done
control=$(sed -n 's/.*control \(http:[^ ,]*\).*/\1/p' "$work/apps.toml")

token=loadtest-token-0123456789
nodes=${NODES:-1}
gateways=()
admins=()
for i in $(seq "$nodes"); do
  gateway=127.0.0.1:$(free_port)
  node_grpc=127.0.0.1:$(free_port)
  admin=127.0.0.1:$(free_port)
  [ "$i" = 1 ] && grpc=$node_grpc
  gateways+=("$gateway")
  admins+=("$admin")
  cat >"$work/herald-$i.toml" <<TOML
[node]
id = "node-$i"
public_url = "http://$gateway"
[gateway]
listen = "$gateway"
# One load generator on one address plays every Exchange server: no per-source limits.
source_requests_per_second = 0
max_connections_per_source = 0
[grpc]
listen = "$node_grpc"
[admin]
listen = "$admin"
[redis]
url = "redis://127.0.0.1:$redis_port"
[auth]
api_tokens = ["$token"]
# The fleet is registered as fast as the node takes it: no per-caller rate.
requests_per_second = 0
[telemetry]
log_filter = "warn"
TOML
  # A node alone needs no [cluster] section.
  if [ "$nodes" -gt 1 ]; then
    printf '[cluster]\npeer_secret = "loadtest-peer-secret-0123456789"\n' >>"$work/herald-$i.toml"
  fi
  grep -v '^#' "$work/apps.toml" >>"$work/herald-$i.toml"
  "${HERALD_BIN:-$bin/herald}" serve --config "$work/herald-$i.toml" 2>"$work/herald-$i.log" &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${node_grpc%:*}/${node_grpc#*:}") 2>/dev/null && break; sleep 0.1; done
done
# The load starts once the nodes hold every shard between them.
shards_owned() {
  local total=0 n
  for admin in "${admins[@]}"; do
    n=$(curl -s "http://$admin/metrics" | sed -n 's/^herald_cluster_shards_owned \([0-9]*\).*/\1/p')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
if [ "$nodes" -gt 1 ]; then
  for _ in $(seq 300); do [ "$(shards_owned)" -ge 1024 ] && break; sleep 0.1; done
fi
gateway=${gateways[0]}
gateway_args=()
for g in "${gateways[@]}"; do gateway_args+=(--gateway "$g"); done
redis_used() { redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
redis_before=$(redis_used)

status=0
TIMEFORMAT="load generator CPU time (s): user %U, system %S, wall %R"
time if [ "$scenario" = compare ]; then
  "$bin/herald-loadtest" compare --gateway "$gateway" --grpc "http://$grpc" --token "$token" "$@" || status=$?
else
  "$bin/herald-loadtest" run --scenario "$scenario" "${gateway_args[@]}" --grpc "http://$grpc" \
    --token "$token" --mock-control "$control" "$@" || status=$?
fi
if [ -n "${KEEP_WORK:-}" ]; then
  curl -s "$control/apns/pushes" >"$work/apns-pushes.json" || true
  curl -s "$control/fcm/pushes" >"$work/fcm-pushes.json" || true
  curl -s "$control/stats" >"$work/mock-stats.json" || true
fi
# Where the CPU went: each process's CPU time, and Redis's time per command.
echo "CPU time (s): $(for pid in "${pids[@]}"; do ps -o comm=,times= -p "$pid" 2>/dev/null | tr '\n' ' '; done)" >&2
redis-cli -p "$redis_port" info commandstats | grep -E 'calls=' | sed 's/^cmdstat_/  redis /; s/,rejected_calls.*//' >&2 || true
# What the registrations cost Redis: used memory per registration (each has one `r:`
# key), and one key of each kind as `MEMORY USAGE` sees it
# (after the last bursts' flushes: max delay 3 s).
sleep 4
registrations=$(redis-cli -p "$redis_port" --scan --pattern '*:r:*' | wc -l)
if [ "$registrations" -gt 0 ]; then
  echo "redis memory: $(( ($(redis_used) - redis_before) / registrations )) bytes per registration ($registrations registrations)" >&2
  for pattern in '*:r:*' '*:d:*' '*:loc:*' '*:sub:*'; do
    key=$(redis-cli -p "$redis_port" --scan --pattern "$pattern" | head -1) || true
    if [ -n "$key" ]; then
      echo "  $pattern: $(redis-cli -p "$redis_port" memory usage "$key") bytes ($(redis-cli -p "$redis_port" object encoding "$key"))" >&2
    fi
  done
  # Bucketed indexes: a part of a shard's `seen` index holds one entry per watched
  # registration whose id ends in its hex digit, a part of its device index one per device,
  # a subscription bucket one per bound subscription id. Each turns from a listpack into a
  # skiplist or hashtable past Redis's *-max-listpack-entries (128).
  for pattern in '*:seen:*' '*:devices:*' '*:subs:*'; do
    key=$(redis-cli -p "$redis_port" --scan --pattern "$pattern" | head -1) || true
    if [ -n "$key" ]; then
      entries=$(redis-cli -p "$redis_port" eval "return redis.call(redis.call('TYPE', KEYS[1]).ok == 'zset' and 'ZCARD' or 'HLEN', KEYS[1])" 1 "$key")
      echo "  $pattern: $(( $(redis-cli -p "$redis_port" memory usage "$key") / entries )) bytes per entry, $entries entries ($(redis-cli -p "$redis_port" object encoding "$key"))" >&2
    fi
  done
fi
exit $status
