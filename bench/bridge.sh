#!/usr/bin/env bash
# Bridge mode against user mode, side by side on one daemon, interleaved,
# medians:
#
#   a guest on banger's bridge (--net bridge: a tap, NAT out through
#   banger's nftables table) against one on the user-mode network (--net
#   user: passt, banger's default): a 64 MiB download by the guest from a
#   server across the host (MiB/s), 100 short HTTP requests one after
#   another (connections/s), and the time `vm run --rm -- true` takes in
#   each mode, and the part of a bridge-mode start that is the bridge's
#   (the lease, tap and rules, as its progress reports it).
#
# The server is in a second network namespace, "outside", reached through
# the host's default route: a bridge-mode guest may not reach the host's
# own addresses (banger's input chain refuses it), so "guest to host" is
# guest to a server one hop past the host, the same for both modes.
# Templates are off, so that both modes boot: bridge-mode guests do not
# resume from templates (yet), and the comparison is of the network.
# Everything runs inside namespaces the script makes and deletes.
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static passt iproute2. The kernel is Debian's linux-image-amd64
# from this host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/bridge.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox passt ip
bench_workdir bridge
build_banger
DEB=$(kernel_deb)

NS=banger-bench-br-$$
OUT=banger-bench-out-$$
SERVER=203.0.113.80
cleanup_more() {
	[ -n "${HTTPD:-}" ] && kill "$HTTPD" 2>/dev/null || true
	if [ -n "${DAEMON:-}" ]; then
		for vm in br us; do BANGER_SOCKET=$WORK/sock inns "$WORK/banger" vm rm -f $vm >/dev/null 2>&1 || true; done
		kill "$DAEMON" 2>/dev/null || true
		DAEMON=
	fi
	ip netns del "$NS" 2>/dev/null || true
	ip netns del "$OUT" 2>/dev/null || true
}
echo "== namespaces $NS (the daemon, its bridge) and $OUT (a server at $SERVER)"
ip netns add "$NS"
ip netns add "$OUT"
inns() { ip netns exec "$NS" "$@"; }
inns ip link set lo up
ip -n "$OUT" link set lo up
inns ip link add bbv0 type veth peer name bbv1 netns "$OUT"
inns ip addr add 198.18.0.1/24 dev bbv0
inns ip link set bbv0 up
ip -n "$OUT" addr add 198.18.0.2/24 dev bbv1
ip -n "$OUT" link set bbv1 up
ip -n "$OUT" addr add $SERVER/32 dev lo
inns ip route add default via 198.18.0.2

mkdir -p "$WORK/www"
head -c 64M /dev/urandom > "$WORK/www/big"
echo ok > "$WORK/www/small"
# Not through a function: $! must be the process itself, for the clean-up.
ip netns exec "$OUT" busybox httpd -f -p $SERVER:8000 -h "$WORK/www" >/dev/null 2>&1 &
HTTPD=$!

echo "== a daemon (templates off), a kernel, a busybox image"
printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = 256\ntemplates = false\n' > "$WORK/config.toml"
ip netns exec "$NS" "$WORK/banger" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
export BANGER_SOCKET=$WORK/sock BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
B="inns $WORK/banger"
for _ in $(seq 100); do $B status >/dev/null 2>&1 && break; sleep 0.05; done
$B kernel import k --deb "$DEB" >/dev/null 2>&1
small_image small
echo "   user mode: $($B status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["network"])')"
echo "   bridge:    $($B status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bridge"])')"
$B vm run --no-workdir --name br --net bridge --image small -- true >/dev/null 2>&1
$B vm run --no-workdir --name us --net user --image small -- true >/dev/null 2>&1
vm_of() { [ "$1" = bridge ] && echo br || echo us; }
for m in bridge user; do echo "   $m guest's MTU: $($B vm exec "$(vm_of $m)" -- cat /sys/class/net/eth0/mtu)"; done

timed() { local s; s=$(now); "$@" >/dev/null 2>&1; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }
download="busybox wget -q -O /dev/null http://$SERVER:8000/big"
requests="i=0; while [ \$i -lt 100 ]; do busybox wget -q -O /dev/null http://$SERVER:8000/small; i=\$((i+1)); done"

echo "== $RUNS runs of each, interleaved"
for m in bridge user; do : >"$WORK/$m-boot"; : >"$WORK/$m-dl"; : >"$WORK/$m-req"; done
: >"$WORK/attach"
# run_timed MODE: a vm run's seconds into MODE-boot; for bridge, what its
# progress says the bridge took (ms) into attach.
run_timed() {
	local s progress
	s=$(now)
	progress=$($B vm run --rm --no-workdir --net "$1" --image small -- true 2>&1 >/dev/null)
	awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}' >>"$WORK/$1-boot"
	if [ "$1" = bridge ]; then
		echo "$progress" | grep -oE 'rules took [0-9.]+(µs|ms|s)' | awk '{v=$3; u=v; sub(/[0-9.]+/, "", u); sub(/(µs|ms|s)$/, "", v); print (u=="s" ? v*1000 : u=="µs" ? v/1000 : v)}' >>"$WORK/attach"
	fi
}
for m in bridge user; do $B vm exec "$(vm_of $m)" -- sh -c "$download" >/dev/null; done # warm
for _ in $(seq "$RUNS"); do
	for m in bridge user; do
		run_timed $m
		timed $B vm exec "$(vm_of $m)" -- sh -c "$download" >>"$WORK/$m-dl"
		timed $B vm exec "$(vm_of $m)" -- sh -c "$requests" >>"$WORK/$m-req"
	done
done
b=$(median <"$WORK/bridge-boot"); u=$(median <"$WORK/user-boot")
awk -v b="$b" -v u="$u" 'BEGIN {printf "   %-34s bridge %.2f s, user %.2f s: bridge/user %.2fx (%+.0f ms)\n", "vm run --rm -- true", b, u, b/u, (b-u)*1000}'
a=$(median <"$WORK/attach")
awk -v a="$a" -v b="$b" 'BEGIN {printf "   %-34s %.1f ms, %.2f%% of a bridge-mode vm run\n", "of which lease, tap and rules", a, a/(b*1000)*100}'
b=$(median <"$WORK/bridge-dl"); u=$(median <"$WORK/user-dl")
awk -v b="$b" -v u="$u" 'BEGIN {printf "   %-34s bridge %.1f MiB/s, user %.1f MiB/s: bridge/user %.2fx\n", "64 MiB download by the guest", 64/b, 64/u, u/b}'
b=$(median <"$WORK/bridge-req"); u=$(median <"$WORK/user-req")
awk -v b="$b" -v u="$u" 'BEGIN {printf "   %-34s bridge %.0f/s, user %.0f/s: bridge/user %.2fx\n", "100 HTTP requests in a row", 100/b, 100/u, u/b}'
