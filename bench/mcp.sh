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
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox
bench_workdir mcp
build_banger
go build -o "$WORK/mcpexec" ./bench/mcpexec

DEB=$(kernel_deb)
echo "== daemon, kernel, a busybox image, one running VM"
cat > "$WORK/config.toml" <<CFG
default_kernel_name = "k"
default_cpus = 1
default_memory_mib = 256
CFG
start_daemon
small_image small
$B vm run --no-workdir --name b --image small -- true >/dev/null 2>&1

echo "== sandbox_exec vs vm exec, $RUNS of each, interleaved"
"$WORK/mcpexec" -banger "$B" -vm b -runs "$RUNS"
