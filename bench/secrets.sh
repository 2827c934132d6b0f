#!/usr/bin/env bash
# Secrets, as a guest sees them, side by side in one run, interleaved,
# medians: two VMs of one daemon fetch from the same HTTPS server,
#
#   direct: the guest holds the real token and talks TLS to the server
#           itself (through passt, as any guest does);
#   proxy:  the guest holds a placeholder (vm run --secret); its curl goes
#           through HTTPS_PROXY, the tunnel to the daemon and the secrets
#           proxy, which opens TLS, puts the value in and talks TLS to the
#           server;
#
# for 100 small HTTPS requests with a Bearer header in one curl (kept-alive
# connection; target: the proxy at most 1.3x the time) and a 64 MiB
# download (target: at least 0.8x the throughput). bench/secretproxy.sh
# measures the proxy alone, in one process.
#
# Everything runs in two network namespaces the script makes and deletes:
# the daemon's, and the server's (bench/secretsd: HTTPS and DNS for
# api.bench), joined by a veth pair. Needs root and: apt-get install
# qemu-system-x86 qemu-utils e2fsprogs busybox-static passt iproute2 curl.
# The kernel is Debian's linux-image-amd64 from this host's apt sources
# (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/secrets.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox passt ip curl ldd
bench_workdir secrets
build_banger
go build -o "$WORK/secretsd" ./bench/secretsd
DEB=$(kernel_deb)

NS=banger-bench-sec-$$
OUT=banger-bench-out-$$
SERVER=198.18.0.2
cleanup_more() {
	[ -n "${DAEMON:-}" ] && for vm in dr px; do BANGER_SOCKET=$WORK/sock inns "$WORK/banger" vm rm -f $vm >/dev/null 2>&1 || true; done
	[ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	ip netns del "$OUT" 2>/dev/null || true
}
inns() { ip netns exec "$NS" "$@"; }
secrets_netns "$NS" "$OUT"
img=$WORK/img
# The direct path's curl trusts the server's CA itself.
curl_image "$img" "$WORK/ca.pem:bench-ca.pem"

printf 'default_kernel_name = "k"\ndefault_cpus = 1\ndefault_memory_mib = 256\nuser_net = "passt"\nguard_host = false\ndns_upstream = "%s"\nproxy_ca_files = ["%s"]\n' "$SERVER" "$WORK/ca.pem" > "$WORK/config.toml"
TOKEN=bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_TOK=$TOKEN
printf '[secrets.tok]\nfrom_env = "BENCH_TOK"\nhosts = ["api.bench"]\nenv = "TOK"\n' > "$WORK/user.toml"
ip netns exec "$NS" "$WORK/banger" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >>"$WORK/daemon.log" 2>&1 &
DAEMON=$!
export BANGER_SOCKET=$WORK/sock BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
B() { inns "$WORK/banger" "$@"; }
for _ in $(seq 100); do B status >/dev/null 2>&1 && break; sleep 0.05; done
B kernel import k --deb "$DEB" >/dev/null 2>&1
B image register tools --rootfs "$img.ext4" --kernel k >/dev/null 2>&1
B vm run --no-workdir --name dr --image tools -- true >/dev/null 2>&1
B vm run --no-workdir --name px --image tools --secret tok -- true >/dev/null 2>&1

# One curl, 100 URLs, one kept-alive connection.
many='seq 100 | sed "s|.*|url = \"https://api.bench/small\"\noutput = \"/dev/null\"|" > /tmp/k'
B vm exec dr -- sh -c "$many" >/dev/null
B vm exec px -- sh -c "$many" >/dev/null
direct_opts="--resolve api.bench:443:$SERVER --cacert /bench-ca.pem -H 'Authorization: Bearer $TOKEN'"
proxy_opts="-H \"Authorization: Bearer \$TOK\""
small() { echo "curl -sS --fail $1 -K /tmp/k"; }
big() { echo "curl -sS --fail $1 -o /dev/null https://api.bench/big"; }
timed() { local s; s=$(now); "$@" >/dev/null; awk -v a="$s" -v b="$(now)" 'BEGIN {print b-a}'; }

echo "== warming both paths"
B vm exec dr -- sh -c "$(small "$direct_opts")" >/dev/null
B vm exec px -- sh -c "$(small "$proxy_opts")" >/dev/null
echo "== $RUNS runs of each, interleaved"
: >"$WORK/dr-small"; : >"$WORK/px-small"; : >"$WORK/dr-big"; : >"$WORK/px-big"
for _ in $(seq "$RUNS"); do
	timed B vm exec dr -- sh -c "$(small "$direct_opts")" >>"$WORK/dr-small"
	timed B vm exec px -- sh -c "$(small "$proxy_opts")" >>"$WORK/px-small"
	timed B vm exec dr -- sh -c "$(big "$direct_opts")" >>"$WORK/dr-big"
	timed B vm exec px -- sh -c "$(big "$proxy_opts")" >>"$WORK/px-big"
done
uses=$(B vm show px -o json | python3 -c 'import json,sys; print(sum(s["uses"] for s in json.load(sys.stdin)["secrets"]))')
d=$(median <"$WORK/dr-small"); p=$(median <"$WORK/px-small")
awk -v d="$d" -v p="$p" 'BEGIN {printf "   %-34s direct %.2f s, proxy %.2f s: proxy/direct %.2fx (target <= 1.3x)\n", "100 small HTTPS requests", d, p, p/d}'
d=$(median <"$WORK/dr-big"); p=$(median <"$WORK/px-big")
awk -v d="$d" -v p="$p" 'BEGIN {printf "   %-34s direct %.1f MiB/s, proxy %.1f MiB/s: proxy/direct %.2fx (target >= 0.8x)\n", "64 MiB download", 64/d, 64/p, d/p}'
echo "   (the proxy put the value in $uses requests)"
