#!/usr/bin/env bash
# Guest network benchmark, side by side in one run, interleaved, medians:
#
#   passt (user_net = "passt", banger's default: the outside network, never
#   the host's loopback) against qemu's own slirp (user_net = "slirp",
#   which opens the host's loopback to guests): the time a `vm run --rm --
#   true` takes, a 64 MiB download by the guest (MiB/s), and 100 short
#   HTTP requests one after another (connections/s).
#
# Everything runs inside a network namespace the script makes and deletes
# (the server the guests fetch from too), so no guest packet leaves it.
# Two daemons run at once, one per backend, each with its own state.
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static passt iproute2. The kernel is Debian's linux-image-amd64
# from this host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/net.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox passt ip
bench_workdir net
build_banger
DEB=$(kernel_deb)

NS=banger-bench-net-$$
SERVER=198.18.0.1
cleanup_more() {
	for d in "${DAEMONS[@]:-}"; do
		[ -n "$d" ] || continue
		for vm in pa sl; do BANGER_SOCKET=$WORK/$d.sock inns "$WORK/banger" vm rm -f $vm >/dev/null 2>&1 || true; done
		kill "$(cat "$WORK/$d.pid")" 2>/dev/null || true
	done
	[ -n "${HTTPD:-}" ] && kill "$HTTPD" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
}
echo "== network namespace $NS: a veth pair, $SERVER, a default route (passt needs one)"
ip netns add "$NS"
inns() { ip netns exec "$NS" "$@"; }
inns ip link set lo up
inns ip link add bbv0 type veth peer name bbv1
inns ip addr add $SERVER/24 dev bbv0
inns ip link set bbv0 up
inns ip link set bbv1 up
inns ip route add default via 198.18.0.254

mkdir -p "$WORK/www"
head -c 64M /dev/urandom > "$WORK/www/big"
echo ok > "$WORK/www/small"
# Not through inns: $! must be the process itself, for the clean-up.
ip netns exec "$NS" busybox httpd -f -p $SERVER:8000 -h "$WORK/www" >/dev/null 2>&1 &
HTTPD=$!

echo "== two daemons (passt, slirp), a kernel, a busybox image"
DAEMONS=(passt slirp)
mkdir -p "$WORK/img/bin" "$WORK/img/etc" "$WORK/img/.banger" "$WORK"/img/{dev,proc,sys,run,tmp,root}
cp "$(command -v busybox)" "$WORK/img/bin/busybox"
for c in sh true cat; do ln -s busybox "$WORK/img/bin/$c"; done
cp "$WORK/banger-agent" "$WORK/img/.banger/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/img/etc/passwd"
mkfs.ext4 -q -d "$WORK/img" "$WORK/img.ext4" 64M
export BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
bd() { local d=$1; shift; BANGER_SOCKET=$WORK/$d.sock inns "$WORK/banger" "$@"; }
for d in "${DAEMONS[@]}"; do
	printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = 256\nuser_net = "%s"\n' "$d" > "$WORK/$d.toml"
	ip netns exec "$NS" "$WORK/banger" daemon --state-dir "$WORK/$d.state" --socket "$WORK/$d.sock" --config "$WORK/$d.toml" >>"$WORK/daemon.log" 2>&1 &
	echo $! > "$WORK/$d.pid"
	for _ in $(seq 100); do bd "$d" status >/dev/null 2>&1 && break; sleep 0.05; done
	bd "$d" kernel import k --deb "$DEB" >/dev/null 2>&1
	bd "$d" image register small --rootfs "$WORK/img.ext4" --kernel k >/dev/null 2>&1
	echo "   $d: $(bd "$d" status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["network"])')"
done
bd passt vm run --no-workdir --name pa --image small -- true >/dev/null 2>&1
bd slirp vm run --no-workdir --name sl --image small -- true >/dev/null 2>&1
vm_of() { [ "$1" = passt ] && echo pa || echo sl; }
if [ -n "${BENCH_MTU:-}" ]; then
	# banger gives a guest under passt passt's largest frame (65520); this
	# sets another, to compare.
	bd passt vm exec pa -- busybox ip link set eth0 mtu "$BENCH_MTU"
fi
for d in "${DAEMONS[@]}"; do echo "   $d guest's MTU: $(bd "$d" vm exec "$(vm_of "$d")" -- cat /sys/class/net/eth0/mtu)"; done

timed() { local s; s=$(now); "$@" >/dev/null 2>&1; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }
download="busybox wget -q -O /dev/null http://$SERVER:8000/big"
requests="i=0; while [ \$i -lt 100 ]; do busybox wget -q -O /dev/null http://$SERVER:8000/small; i=\$((i+1)); done"

echo "== $RUNS runs of each, interleaved"
for d in "${DAEMONS[@]}"; do : >"$WORK/$d-boot"; : >"$WORK/$d-dl"; : >"$WORK/$d-req"; done
for d in "${DAEMONS[@]}"; do bd "$d" vm exec "$(vm_of "$d")" -- sh -c "$download" >/dev/null; done # warm
for _ in $(seq "$RUNS"); do
	for d in "${DAEMONS[@]}"; do
		timed bd "$d" vm run --rm --no-workdir --image small -- true >>"$WORK/$d-boot"
		timed bd "$d" vm exec "$(vm_of "$d")" -- sh -c "$download" >>"$WORK/$d-dl"
		timed bd "$d" vm exec "$(vm_of "$d")" -- sh -c "$requests" >>"$WORK/$d-req"
	done
done
p=$(median <"$WORK/passt-boot"); s=$(median <"$WORK/slirp-boot")
awk -v p="$p" -v s="$s" 'BEGIN {printf "   %-34s passt %.2f s, slirp %.2f s: passt/slirp %.2fx (%+.0f ms)\n", "vm run --rm -- true", p, s, p/s, (p-s)*1000}'
p=$(median <"$WORK/passt-dl"); s=$(median <"$WORK/slirp-dl")
awk -v p="$p" -v s="$s" 'BEGIN {printf "   %-34s passt %.1f MiB/s, slirp %.1f MiB/s: passt/slirp %.2fx\n", "64 MiB download by the guest", 64/p, 64/s, s/p}'
p=$(median <"$WORK/passt-req"); s=$(median <"$WORK/slirp-req")
awk -v p="$p" -v s="$s" 'BEGIN {printf "   %-34s passt %.0f/s, slirp %.0f/s: passt/slirp %.2fx\n", "100 HTTP requests in a row", 100/p, 100/s, s/p}'
