# Shared by the bench scripts (sourced): bench_workdir makes WORK (the
# run's scratch directory, with the banger binary in it), start_daemon
# sets DAEMON (its PID) and B (the CLI).
CACHE=/var/tmp/banger-bench-cache
mkdir -p "$CACHE"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# stop_daemon removes the bench daemon's VMs, then stops it.
stop_daemon() {
	[ -n "${DAEMON:-}" ] || return 0
	BANGER_SOCKET=$WORK/sock "$WORK/banger" vm ls -o json 2>/dev/null | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)]' |
		while read -r n; do BANGER_SOCKET=$WORK/sock "$WORK/banger" vm rm -f "$n" >/dev/null 2>&1 || true; done
	kill "$DAEMON" 2>/dev/null || true
}

# kernel_deb prints the kernel package the benches boot:
# BANGER_BENCH_KERNEL_DEB, else Debian's linux-image-amd64 from this
# host's apt sources, cached.
kernel_deb() {
	local deb=${BANGER_BENCH_KERNEL_DEB:-} pkg
	if [ -z "$deb" ]; then
		deb=$(ls "$CACHE"/linux-image-*.deb 2>/dev/null | head -1 || true)
		if [ -z "$deb" ]; then
			pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
			(cd "$CACHE" && apt-get download -q "$pkg" >/dev/null)
			deb=$(ls "$CACHE"/linux-image-*.deb | head -1)
		fi
	fi
	echo "$deb"
}

# bench_workdir NAME makes WORK and removes it on exit, with the daemon and
# its VMs (a script with more to end defines cleanup_more); a failure
# prints the daemon's last lines.
bench_workdir() {
	WORK=$(mktemp -d "/var/tmp/banger-bench-$1.XXXXXX")
	DAEMON=
	trap bench_cleanup EXIT
	trap 'echo "bench: failed at line $LINENO; the daemon said:" >&2; tail -5 "$WORK/daemon.log" >&2' ERR
}

bench_cleanup() {
	if declare -F cleanup_more >/dev/null; then cleanup_more; fi
	stop_daemon
	wait 2>/dev/null || true
	rm -rf "$WORK"
}

# build_banger builds banger and its guest agent into WORK.
build_banger() {
	echo "== building banger"
	CGO_ENABLED=0 go build -o "$WORK/banger" ./cmd/banger
	CGO_ENABLED=0 go build -ldflags "-s -w" -o "$WORK/banger-agent" ./cmd/banger-agent
}

# start_daemon runs the daemon on $WORK/config.toml, points the CLI's
# environment at it, and imports the kernel k from $DEB.
start_daemon() {
	"$WORK/banger" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >"$WORK/daemon.log" 2>&1 &
	DAEMON=$!
	export BANGER_SOCKET=$WORK/sock BANGER_SSH_KEY=$WORK/id_ed25519 BANGER_CONFIG=$WORK/user.toml
	B="$WORK/banger"
	for _ in $(seq 100); do $B status >/dev/null 2>&1 && break; sleep 0.05; done
	$B kernel import k --deb "$DEB" >/dev/null 2>&1
}

# need_tools TOOL... stops the script when a tool is missing, pointing at
# the script's header, which says what to install.
need_tools() {
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "bench: $tool is missing (see the header of $0)" >&2; exit 1; }
	done
}

# small_image NAME registers an image of busybox and banger's agent.
small_image() {
	local img=$WORK/img-$1
	mkdir -p "$img/bin" "$img/etc" "$img/.banger" "$img"/{dev,proc,sys,run,tmp,root}
	cp "$(command -v busybox)" "$img/bin/busybox"
	for c in sh true cat; do ln -s busybox "$img/bin/$c"; done
	cp "$WORK/banger-agent" "$img/.banger/init"
	echo 'root:x:0:0:root:/root:/bin/sh' > "$img/etc/passwd"
	mkfs.ext4 -q -d "$img" "$img.ext4" 64M
	$B image register "$1" --rootfs "$img.ext4" --kernel k >/dev/null 2>&1
}

# secrets_netns NS OUT builds the secrets benchmarks' network: namespace
# NS (the daemons') and OUT (bench/secretsd at $SERVER: HTTPS and DNS for
# api.bench, its CA in $WORK/ca.pem) joined by a veth pair, NS routed
# through OUT. Needs $WORK/secretsd; sets SRV to the server's pid. The
# caller deletes the namespaces and ends SRV.
secrets_netns() {
	local ns=$1 out=$2
	echo "== namespaces $ns (the daemons) and $out (api.bench at $SERVER)"
	ip netns add "$ns"
	ip netns add "$out"
	ip -n "$ns" link set lo up
	ip -n "$out" link set lo up
	ip -n "$ns" link add bsec0 type veth peer name bsec1 netns "$out"
	ip -n "$ns" addr add 198.18.0.1/24 dev bsec0
	ip -n "$ns" link set bsec0 up
	ip -n "$out" addr add "$SERVER/24" dev bsec1
	ip -n "$out" link set bsec1 up
	ip -n "$ns" route add default via "$SERVER"
	ip netns exec "$out" "$WORK/secretsd" -addr "$SERVER" -name api.bench -ca "$WORK/ca.pem" >>"$WORK/daemon.log" 2>&1 &
	SRV=$!
	for _ in $(seq 100); do [ -s "$WORK/ca.pem" ] && break; sleep 0.05; done
}

# curl_image DIR [SRC:DEST]... makes DIR.ext4: busybox, curl and the
# libraries it links, the guest agent, and each SRC at /DEST.
curl_image() {
	local img=$1 extra
	shift
	echo "== an image of busybox, curl and the libraries it links"
	mkdir -p "$img/bin" "$img/etc" "$img/.banger" "$img"/{dev,proc,sys,run,tmp,root}
	cp "$(command -v busybox)" "$img/bin/busybox"
	for c in sh true cat seq sed; do ln -s busybox "$img/bin/$c"; done
	for f in /usr/bin/curl $(ldd /usr/bin/curl | grep -o '/[^ ]*'); do
		mkdir -p "$img$(dirname "$f")"
		cp -L "$f" "$img$f"
	done
	cp "$WORK/banger-agent" "$img/.banger/init"
	echo 'root:x:0:0:root:/root:/bin/sh' > "$img/etc/passwd"
	for extra in "$@"; do cp "${extra%%:*}" "$img/${extra#*:}"; done
	mkfs.ext4 -q -d "$img" "$img.ext4" 256M
}
