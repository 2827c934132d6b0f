#!/usr/bin/env bash
# MCP benchmark, side by side in one run, interleaved, medians:
#
#   sandbox_exec of `true` through one `banger mcp` session (as an agent
#   calls it) against `banger vm exec VM -- true` on the same running VM
#   (target: the MCP layer adds at most 20 ms).
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static. The kernel is Debian's linux-image-amd64 from this
# host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/mcp.sh [RUNS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
export PATH="/usr/local/go/bin:$PATH"
for tool in qemu-system-x86_64 qemu-img mkfs.ext4 busybox; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is missing (see the header of $0)" >&2; exit 1; }
done

. bench/lib.sh
WORK=$(mktemp -d /var/tmp/banger-bench-mcp.XXXXXX)
DAEMON=
cleanup() {
	stop_daemon
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "bench: failed at line $LINENO; the daemon said:" >&2; tail -5 "$WORK/daemon.log" >&2' ERR

echo "== building banger"
CGO_ENABLED=0 go build -o "$WORK/banger" ./cmd/banger
CGO_ENABLED=0 go build -ldflags "-s -w" -o "$WORK/banger-agent" ./cmd/banger-agent
go build -o "$WORK/mcpexec" ./bench/mcpexec

DEB=$(kernel_deb)
echo "== daemon, kernel, a busybox image, one running VM"
cat > "$WORK/config.toml" <<CFG
default_kernel_name = "k"
default_cpus = 1
default_memory_mib = 256
CFG
"$WORK/banger" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
export BANGER_SOCKET=$WORK/sock BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
B="$WORK/banger"
for _ in $(seq 100); do $B status >/dev/null 2>&1 && break; sleep 0.05; done
$B kernel import k --deb "$DEB" >/dev/null 2>&1
IMG=$WORK/img
mkdir -p "$IMG/bin" "$IMG/etc" "$IMG/.banger" "$IMG"/{dev,proc,sys,run,tmp,root}
cp "$(command -v busybox)" "$IMG/bin/busybox"
for c in sh true cat; do ln -s busybox "$IMG/bin/$c"; done
cp "$WORK/banger-agent" "$IMG/.banger/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$IMG/etc/passwd"
mkfs.ext4 -q -d "$IMG" "$WORK/img.ext4" 64M
$B image register small --rootfs "$WORK/img.ext4" --kernel k >/dev/null 2>&1
$B vm run --no-workdir --name b --image small -- true >/dev/null 2>&1

echo "== sandbox_exec vs vm exec, $RUNS of each, interleaved"
"$WORK/mcpexec" -banger "$B" -vm b -runs "$RUNS"
