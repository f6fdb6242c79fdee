#!/usr/bin/env bash
# Measures the node's resident memory per live subscription actor: runs
# `scripts/loadtest.sh compare` with one heartbeat for each of the first ACTORS of N
# registrations (so ACTORS actors start and, with the default 5-minute idle timeout, stay
# live), samples the node's VmRSS and herald_actors_live every second, and prints KiB per
# live actor and the node's peak RSS (DESIGN.md §6: 1 M registered, 100 k live, ≤ 4 GiB).
#   scripts/actor-memory.sh [REGISTRATIONS [ACTORS]]   (default 50000, ACTORS = REGISTRATIONS;
#   HERALD_BIN as for loadtest.sh)
# mimalloc is told not to use huge pages and not to commit its arenas eagerly, so RSS
# counts the pages the node touches rather than whole 2 MB pages.
set -euo pipefail
cd "$(dirname "$0")/.."
registrations=${1:-50000}
actors=${2:-$registrations}
samples=$(mktemp)
bin=${HERALD_BIN:-target/release/herald}
sample() {
  while sleep 1; do
    local pid config admin live
    pid=$(pgrep -f "^$bin serve" | head -1) || continue
    config=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed 's/.*--config \([^ ]*\).*/\1/')
    admin=$(awk '/^\[admin\]/{a=1} a&&/^listen/{gsub(/"/,"",$3); print $3; exit}' "$config" 2>/dev/null) || continue
    live=$(curl -s "http://$admin/metrics" | awk '/^herald_actors_live /{print $2}') || continue
    echo "$(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null) ${live:-}"
  done
}
sample >"$samples" 2>/dev/null &
sampler=$!
trap 'kill $sampler 2>/dev/null || true; rm -f "$samples"' EXIT
MIMALLOC_ALLOW_LARGE_OS_PAGES=0 MIMALLOC_ARENA_EAGER_COMMIT=0 \
  scripts/loadtest.sh compare --registrations "$registrations" --shape heartbeat \
  --count "$actors" --connections 32 2>&1 | grep -E '^herald:|^redis memory|^  \*' || true
# Samples are "rss_kib live_actors"; before any actor, the node's own footprint.
awk '
  NF == 2 && $2 == 0 { base = $1 }
  NF == 2 && $2 > 0 { if ($2 >= top) { top = $2; rss = $1 } n++; l[n] = $2; r[n] = $1 }
  NF >= 1 && $1 > peak { peak = $1 }
  END {
    if (!top || !base) { print "no live actors sampled" > "/dev/stderr"; exit 1 }
    # The slope between the first and last sample that are not yet at the peak leaves out
    # the node fixed costs and the requests in flight.
    for (i = 1; i <= n; i++) if (l[i] < top) { if (!first) first = i; last = i }
    printf "node peak RSS %.1f MiB\n", peak / 1024
    printf "node RSS %.1f MiB with no live actor, %.1f MiB with %d: %.2f KiB per live actor\n", base / 1024, rss / 1024, top, (rss - base) / top
    if (first && last > first) printf "between %d and %d live actors: %.2f KiB per live actor\n", l[first], l[last], (r[last] - r[first]) / (l[last] - l[first])
  }' "$samples"
