#!/usr/bin/env bash
# What the activity record costs, side by side in one run, interleaved,
# medians: two daemons, one recording (activity_events = 10000, the
# default) and one not (activity_events = 0), each with a VM given a
# secret, time
#
#   100 small HTTPS requests from the guest through the secrets proxy
#   (one curl, a kept-alive connection): each use of the secret, and the
#   proxy's connection, go on the record;
#   sandbox_exec of `true` through one `banger mcp` session per daemon
#   (bench/mcpexec -vs): each call adds a command to the record.
#
# Target: recording at most 1.1x the time. The writer's own cost per event
# is BenchmarkRecord in internal/service/activity.
#
# Everything runs in two network namespaces the script makes and deletes
# (as bench/secrets.sh): the daemons', and the server's (bench/secretsd).
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static passt iproute2 curl. The kernel is Debian's
# linux-image-amd64 from this host's apt sources (or
# BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/activity.sh [RUNS]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox passt ip curl ldd
bench_workdir activity
build_banger
go build -o "$WORK/secretsd" ./bench/secretsd
go build -o "$WORK/mcpexec" ./bench/mcpexec
DEB=$(kernel_deb)

NS=banger-bench-act-$$
OUT=banger-bench-aout-$$
SERVER=198.18.0.2
DAEMONS=(on off)
inns() { ip netns exec "$NS" "$@"; }
B() { local d=$1; shift; BANGER_SOCKET=$WORK/$d.sock inns "$WORK/banger" "$@"; }
cleanup_more() {
	local pid
	for d in "${DAEMONS[@]}"; do
		B "$d" vm rm -f px >/dev/null 2>&1 || true
		[ -f "$WORK/$d.pid" ] || continue
		pid=$(cat "$WORK/$d.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	done
	[ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	ip netns del "$OUT" 2>/dev/null || true
}
secrets_netns "$NS" "$OUT"
img=$WORK/img
curl_image "$img"

TOKEN=bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_TOK=$TOKEN
printf '[secrets.tok]\nfrom_env = "BENCH_TOK"\nhosts = ["api.bench"]\nenv = "TOK"\n' > "$WORK/user.toml"
export BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
echo "== two daemons: recording on and off"
for d in "${DAEMONS[@]}"; do
	events=10000
	[ "$d" = off ] && events=0
	printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = 256\nuser_net = "passt"\nguard_host = false\ndns_upstream = "%s"\nproxy_ca_files = ["%s"]\nactivity_events = %d\n' "$SERVER" "$WORK/ca.pem" "$events" > "$WORK/$d.toml"
	# ip netns exec execs the daemon: $! is its pid, which cleanup ends
	# (a shell function run in the background would be a subshell's).
	ip netns exec "$NS" "$WORK/banger" daemon --state-dir "$WORK/$d.state" --socket "$WORK/$d.sock" --config "$WORK/$d.toml" >>"$WORK/daemon.log" 2>&1 &
	echo $! > "$WORK/$d.pid"
	for _ in $(seq 100); do B "$d" status >/dev/null 2>&1 && break; sleep 0.05; done
	B "$d" kernel import k --deb "$DEB" >/dev/null 2>&1
	B "$d" image register tools --rootfs "$img.ext4" --kernel k >/dev/null 2>&1
	B "$d" vm run --no-workdir --name px --image tools --secret tok -- true >/dev/null 2>&1
	B "$d" vm exec px -- sh -c 'seq 100 | sed "s|.*|url = \"https://api.bench/small\"\noutput = \"/dev/null\"|" > /tmp/k'
done
small='curl -sS --fail -H "Authorization: Bearer $TOK" -K /tmp/k'
timed() { local s; s=$(now); "$@" >/dev/null; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }
echo "== warming both"
for d in "${DAEMONS[@]}"; do B "$d" vm exec px -- sh -c "$small" >/dev/null; done
echo "== $RUNS runs of 100 requests each, interleaved"
for d in "${DAEMONS[@]}"; do : >"$WORK/$d.t"; done
for _ in $(seq "$RUNS"); do
	for d in "${DAEMONS[@]}"; do
		timed B "$d" vm exec px -- sh -c "$small" >>"$WORK/$d.t"
	done
done
on=$(median <"$WORK/on.t"); off=$(median <"$WORK/off.t")
awk -v a="$on" -v b="$off" 'BEGIN {printf "   %-40s on %.2f s, off %.2f s: on/off %.3fx (target <= 1.1x)\n", "100 HTTPS requests through the proxy", a, b, a/b}'
echo "   recorded on the on daemon: $(B on vm report px -o json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())))')"
echo "== sandbox_exec true, $((RUNS * 5)) calls each, interleaved"
BANGER_SOCKET=$WORK/on.sock inns "$WORK/mcpexec" -banger "$WORK/banger" -vm px -runs $((RUNS * 5)) -vs "$WORK/off.sock" | sed 's/^/   /'
