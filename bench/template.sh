#!/usr/bin/env bash
# Template benchmark, side by side in one run, interleaved, medians:
#
#   1. `vm run --rm -- true` resumed from a template (banger's default:
#      templates = true) against a cold boot (templates = false), same
#      image, kernel and size (target: at least 5x faster under TCG);
#      1b. `vm start` of a created VM alone, to ready;
#   2. the host memory (PSS, from /proc/PID/smaps_rollup) of five idle
#      clones of one template against five idle cold-booted VMs (target:
#      the clones at most half).
#
# Two daemons run at once, each with its own state, VMs on qemu's
# user-mode network (127.0.0.1 only).
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static passt. The kernel is Debian's linux-image-amd64 from this
# host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/template.sh [RUNS]   (default 5; MEMORY=MiB, default 256)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
MEMORY=${MEMORY:-256}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox
bench_workdir template
build_banger
DEB=$(kernel_deb)
DAEMONS=(warm cold)
cleanup_more() {
	for d in "${DAEMONS[@]}"; do
		[ -f "$WORK/$d.pid" ] || continue
		for i in 1 2 3 4 5; do bd "$d" vm rm -f "$d$i" >/dev/null 2>&1 || true; done
		kill "$(cat "$WORK/$d.pid")" 2>/dev/null || true
	done
}
bd() { local d=$1; shift; BANGER_SOCKET=$WORK/$d.sock "$WORK/banger" "$@"; }
export BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml

echo "== two daemons (templates on, off), a kernel, a busybox image"
mkdir -p "$WORK/img/bin" "$WORK/img/etc" "$WORK/img/.banger" "$WORK"/img/{dev,proc,sys,run,tmp,root}
cp "$(command -v busybox)" "$WORK/img/bin/busybox"
for c in sh true cat sleep; do ln -s busybox "$WORK/img/bin/$c"; done
cp "$WORK/banger-agent" "$WORK/img/.banger/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/img/etc/passwd"
mkfs.ext4 -q -d "$WORK/img" "$WORK/img.ext4" 64M
for d in "${DAEMONS[@]}"; do
	on=true; [ "$d" = cold ] && on=false
	printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = %s\ntemplates = %s\n' "$MEMORY" "$on" > "$WORK/$d.toml"
	"$WORK/banger" daemon --state-dir "$WORK/$d.state" --socket "$WORK/$d.sock" --config "$WORK/$d.toml" >>"$WORK/daemon.log" 2>&1 &
	echo $! > "$WORK/$d.pid"
	for _ in $(seq 100); do bd "$d" status >/dev/null 2>&1 && break; sleep 0.05; done
	bd "$d" kernel import k --deb "$DEB" >/dev/null 2>&1
	bd "$d" image register small --rootfs "$WORK/img.ext4" --kernel k >/dev/null 2>&1
done
# The first start of the kind makes the template (and, on both, the
# initramfs): not timed.
for d in "${DAEMONS[@]}"; do bd "$d" vm run --rm --no-workdir --image small -- true >/dev/null 2>&1; done
bd warm template ls

timed() { local s; s=$(now); "$@" >/dev/null 2>&1; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }
echo "== 1. vm run --rm -- true, $RUNS runs of each, interleaved"
for d in "${DAEMONS[@]}"; do : >"$WORK/$d-run"; done
for _ in $(seq "$RUNS"); do
	for d in "${DAEMONS[@]}"; do
		timed bd "$d" vm run --rm --no-workdir --image small -- true >>"$WORK/$d-run"
	done
done
w=$(median <"$WORK/warm-run"); c=$(median <"$WORK/cold-run")
awk -v w="$w" -v c="$c" 'BEGIN {printf "   from a template %.2f s, cold %.2f s: cold/template %.1fx\n", w, c, c/w}'

echo "== 1b. vm start of a created VM, to ready (no command, no removal), $RUNS runs of each, interleaved"
for d in "${DAEMONS[@]}"; do : >"$WORK/$d-start"; done
for _ in $(seq "$RUNS"); do
	for d in "${DAEMONS[@]}"; do
		bd "$d" vm create --no-workdir --name s --image small >/dev/null 2>&1
		timed bd "$d" vm start s >>"$WORK/$d-start"
		bd "$d" vm rm -f s >/dev/null 2>&1
	done
done
w=$(median <"$WORK/warm-start"); c=$(median <"$WORK/cold-start")
awk -v w="$w" -v c="$c" 'BEGIN {printf "   from a template %.2f s, cold %.2f s: cold/template %.1fx\n", w, c, c/w}'

echo "== 2. PSS of five idle VMs each ($MEMORY MiB guests)"
for i in 1 2 3 4 5; do
	for d in "${DAEMONS[@]}"; do
		bd "$d" vm run --no-workdir --name "$d$i" --image small -- true >/dev/null 2>"$WORK/run.err" || { tail -3 "$WORK/run.err" >&2; exit 1; }
	done
done
sleep 5 # idle
pss() {
	local total=0 pid
	for i in 1 2 3 4 5; do
		pid=$(bd "$1" vm show "$1$i" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
		total=$((total + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")))
	done
	echo "$total"
}
w=$(pss warm); c=$(pss cold)
awk -v w="$w" -v c="$c" 'BEGIN {printf "   five clones %.0f MiB, five cold VMs %.0f MiB (VMM processes): clones/cold %.2fx\n", w/1024, c/1024, w/c}'
