#!/usr/bin/env bash
# Disk cache benchmark, side by side in one run, interleaved, medians:
#
#   the disk cache mode banger uses, writeback (a guest's flushes reach
#   the host file, so what it synced survives a killed VMM), against
#   cache=unsafe (flushes ignored), on two VMs of the same busybox image
#   running at once: a 64 MiB sequential write ended by fsync, and 200
#   small files each written and synced.
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static. The kernel is Debian's linux-image-amd64 from this
# host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/disk.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox
bench_workdir disk
build_banger
DEB=$(kernel_deb)

echo "== daemon, kernel, a busybox image"
config() { printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = 256\ndisk_cache = "%s"\n' "$1" > "$WORK/config.toml"; }
config writeback
start_daemon
small_image small

# A VM's disk cache is the daemon's setting when the VM starts: one VM
# under each, both running while the runs interleave.
$B vm create --no-workdir --name wb --image small --disk 512M >/dev/null 2>&1
$B vm start wb >/dev/null 2>&1
stop_daemon_only() { kill "$DAEMON"; while kill -0 "$DAEMON" 2>/dev/null; do sleep 0.05; done; }
stop_daemon_only
config unsafe
"$WORK/banger" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >>"$WORK/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do $B status >/dev/null 2>&1 && break; sleep 0.05; done
$B vm create --no-workdir --name un --image small --disk 512M >/dev/null 2>&1
$B vm start un >/dev/null 2>&1
for vm in wb un; do
	pid=$($B vm show $vm -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
	echo "   vm $vm: $(tr '\0' ' ' < /proc/$pid/cmdline | grep -o 'id=root[^ ]*')"
done

seq_write='busybox dd if=/dev/zero of=/root/seq bs=1M count=64 conv=fsync 2>/dev/null; busybox rm /root/seq; busybox sync'
small_sync='i=0; while [ $i -lt 200 ]; do echo $i > /root/s$i; busybox sync; i=$((i+1)); done; busybox rm -f /root/s*; busybox sync'
timed() { local s; s=$(now); $B vm exec "$1" -- sh -c "$2" >/dev/null; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }

echo "== $RUNS runs of each, interleaved"
: >"$WORK/wb-seq"; : >"$WORK/un-seq"; : >"$WORK/wb-small"; : >"$WORK/un-small"
timed wb "$seq_write" >/dev/null; timed un "$seq_write" >/dev/null   # warm both
for _ in $(seq "$RUNS"); do
	for vm in wb un; do
		timed $vm "$seq_write" >>"$WORK/$vm-seq"
		timed $vm "$small_sync" >>"$WORK/$vm-small"
	done
done
report() {
	local w u
	w=$(median <"$WORK/wb-$1"); u=$(median <"$WORK/un-$1")
	awk -v n="$2" -v w="$w" -v u="$u" 'BEGIN {printf "   %-40s writeback %.2f s, unsafe %.2f s: writeback/unsafe %.2fx\n", n, w, u, w/u}'
}
report seq "64 MiB written, then fsync"
report small "200 small files, each synced"
