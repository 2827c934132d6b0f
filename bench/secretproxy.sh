#!/usr/bin/env bash
# Secrets proxy benchmark, side by side in one run, interleaved, medians:
#
#   1. 100 small HTTPS GETs with a Bearer header, one after another on
#      kept-alive connections, through the proxy (the placeholder replaced)
#      against straight to the server with the real value (target: the
#      proxy at most 1.3x the time);
#   2. a 64 MiB HTTPS download, the same two ways (target: the proxy at
#      least 0.8x the throughput).
#
# Both also run through the proxy's other path, "tunnel": a CONNECT to a
# host no secret names, spliced untouched. It is the cost of the extra
# hop alone, the floor for any proxy here.
#
# Both are Go benchmarks of internal/service/secretproxy, everything in one
# process on 127.0.0.1: the guest's side of the path (its tunnel to the
# proxy) is not in them. The test binary is built once and run RUNS
# times, each run timing direct, proxy, tunnel in turn (go test -count
# repeats each sub-benchmark back to back instead, so a change in the
# machine's load would land on one side).
#
# Needs Go only, no root. Usage: bench/secretproxy.sh [RUNS]   (default 5;
# BENCHTIME=1s is each benchmark's -test.benchtime)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BENCHTIME=${BENCHTIME:-1s}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
WORK=$(mktemp -d /tmp/banger-bench-secretproxy.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== building the benchmark"
go test -c -o "$WORK/secretproxy.test" ./internal/service/secretproxy/

echo "== $RUNS runs, direct, proxy and tunnel in turn"
for i in $(seq "$RUNS"); do
	"$WORK/secretproxy.test" -test.run '^$' -test.bench 'SmallHTTPS|Download' -test.benchtime "$BENCHTIME" -test.count 1 >"$WORK/run$i"
	# "BenchmarkDownload/proxy-2  9  160834227 ns/op  417.25 MB/s" -> "Download/proxy 160834227 417.25"
	awk '/^Benchmark/ {
		name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name); ns = ""; mbs = ""
		for (f = 2; f <= NF; f++) { if ($f == "ns/op") ns = $(f-1); if ($f == "MB/s") mbs = $(f-1) }
		print name, ns, mbs
	}' "$WORK/run$i" >"$WORK/parsed$i"
	get() { awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$WORK/parsed$i"; }
	sd=$(get SmallHTTPS/direct 2); sp=$(get SmallHTTPS/proxy 2); st=$(get SmallHTTPS/tunnel 2)
	dd=$(get Download/direct 3); dp=$(get Download/proxy 3); dt=$(get Download/tunnel 3)
	for v in "$sd" "$sp" "$st" "$dd" "$dp" "$dt"; do
		[ -n "$v" ] || { echo "bench: run $i printed no figures:" >&2; cat "$WORK/run$i" >&2; exit 1; }
	done
	for v in sd sp st dd dp dt; do echo "${!v}" >>"$WORK/$v"; done
	awk -v a="$sp" -v b="$sd" 'BEGIN {print a/b}' >>"$WORK/small-ratio"
	awk -v a="$dp" -v b="$dd" 'BEGIN {print a/b}' >>"$WORK/down-ratio"
	awk -v i="$i" -v sd="$sd" -v sp="$sp" -v st="$st" -v dd="$dd" -v dp="$dp" -v dt="$dt" 'BEGIN {
		printf "   run %d: 100 GETs direct %.2f ms, proxy %.2f ms, tunnel %.2f ms; download direct %.0f MB/s, proxy %.0f MB/s, tunnel %.0f MB/s\n",
			i, sd/1e6, sp/1e6, st/1e6, dd, dp, dt}'
done

for v in sd sp st dd dp dt; do printf -v "$v" '%s' "$(median <"$WORK/$v")"; done
sr=$(median <"$WORK/small-ratio"); dr=$(median <"$WORK/down-ratio")
echo "== medians of $RUNS runs"
awk -v d="$sd" -v p="$sp" -v t="$st" -v r="$sr" 'BEGIN {
	printf "1. 100 small HTTPS GETs: direct %.2f ms, proxy %.2f ms (+%.0f us a request): proxy/direct %.2fx (paired %.2fx; target <= 1.3x)\n", d/1e6, p/1e6, (p-d)/100/1e3, p/d, r
	printf "   tunnel (the extra hop alone) %.2f ms: tunnel/direct %.2fx\n", t/1e6, t/d}'
awk -v d="$dd" -v p="$dp" -v t="$dt" -v r="$dr" 'BEGIN {
	printf "2. 64 MiB download: direct %.0f MB/s, proxy %.0f MB/s: proxy/direct %.2fx (paired %.2fx; target >= 0.8x)\n", d, p, p/d, r
	printf "   tunnel (the extra hop alone) %.0f MB/s: tunnel/direct %.2fx\n", t, t/d}'
