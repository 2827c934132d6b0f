# Shared by the bench scripts (sourced). They set WORK (the run's scratch
# directory, with the banger binary in it) and DAEMON (its PID, once up).
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
