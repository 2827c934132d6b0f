#!/usr/bin/env bash
# What the kernel's modules cost a boot, side by side in one run,
# interleaved, medians: cold boots (templates off) of the busybox image
# to ready, `vm run --rm -- true`, by a daemon that gives guests their
# kernel's modules (guest_modules = true, the default: a read-only modules
# disk, mounted by the agent, and cgroup v2) against one that does not.
# Target: at most 5% slower.
#
# Guests get no network (user_net = "isolated") and the daemons do not
# guard the host (guard_host = false): nothing on the host changes.
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static kmod. The kernel is Debian's linux-image-amd64 from this
# host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/modules.sh [RUNS]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox depmod
bench_workdir modules
build_banger
DEB=$(kernel_deb)
DAEMONS=(with without)
cleanup_more() {
	for d in "${DAEMONS[@]}"; do
		[ -f "$WORK/$d.pid" ] && kill "$(cat "$WORK/$d.pid")" 2>/dev/null || true
	done
}
export BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
bd() { local d=$1; shift; BANGER_SOCKET=$WORK/$d.sock "$WORK/banger" "$@"; }

img=$WORK/img
mkdir -p "$img/bin" "$img/etc" "$img/.banger" "$img"/{dev,proc,sys,run,tmp,root}
cp "$(command -v busybox)" "$img/bin/busybox"
for c in sh true cat; do ln -s busybox "$img/bin/$c"; done
cp "$WORK/banger-agent" "$img/.banger/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$img/etc/passwd"
mkfs.ext4 -q -d "$img" "$img.ext4" 64M

echo "== two daemons: guest_modules on and off, templates off"
for d in "${DAEMONS[@]}"; do
	on=true
	[ "$d" = without ] && on=false
	printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = 256\ntemplates = false\nuser_net = "isolated"\nguard_host = false\nguest_modules = %s\n' "$on" > "$WORK/$d.toml"
	"$WORK/banger" daemon --state-dir "$WORK/$d.state" --socket "$WORK/$d.sock" --config "$WORK/$d.toml" >>"$WORK/daemon.log" 2>&1 &
	echo $! > "$WORK/$d.pid"
	for _ in $(seq 100); do bd "$d" status >/dev/null 2>&1 && break; sleep 0.05; done
	bd "$d" kernel import k --deb "$DEB" >/dev/null 2>&1
	bd "$d" image register small --rootfs "$img.ext4" --kernel k >/dev/null 2>&1
done
# The first boot builds the modules disk: not what is measured.
bd with vm run --rm --no-workdir --image small -- true >/dev/null 2>&1
echo "   with modules: $(bd with vm run --rm --no-workdir --image small -- sh -c 'ls /lib/modules/*/modules.dep; cat /sys/fs/cgroup/cgroup.controllers' 2>/dev/null | tr '\n' ' ')"

timed() { local s; s=$(now); "$@" >/dev/null 2>&1; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }
echo "== $RUNS cold boots each, interleaved"
for d in "${DAEMONS[@]}"; do : >"$WORK/$d.t"; done
for _ in $(seq "$RUNS"); do
	for d in "${DAEMONS[@]}"; do
		timed bd "$d" vm run --rm --no-workdir --image small -- true >>"$WORK/$d.t"
	done
done
w=$(median <"$WORK/with.t"); o=$(median <"$WORK/without.t")
awk -v w="$w" -v o="$o" 'BEGIN {printf "   %-30s with %.2f s, without %.2f s: with/without %.3fx (target <= 1.05x)\n", "vm run --rm -- true, cold", w, o, w/o}'
