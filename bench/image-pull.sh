#!/usr/bin/env bash
# Image pull benchmark: banger against two peer pipelines on the same
# images, served from Debian's docker-registry on 127.0.0.1, side by side
# in one run. Prints median wall times, their ratios, and banger's peak
# memory (the daemon's VmHWM).
#
#   peer a: skopeo copy + umoci unpack + mkfs.ext4 -d
#   peer b: crane export | tar2ext4
#
# Images: Debian bookworm built here with mmdebstrap from this host's apt
# sources, and a many-file tree (40,000 files, 512 MiB) from bench/genfiles.
# Needs root (umoci unpack and mkfs.ext4 -d keep owners; mmdebstrap), and:
#   apt-get install docker-registry skopeo umoci mmdebstrap e2fsprogs
#   go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
# Usage: sudo bench/image-pull.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
export PATH="/usr/local/go/bin:$(go env GOPATH)/bin:$PATH"
for tool in docker-registry skopeo umoci mkfs.ext4 mmdebstrap crane; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is missing (see the header of $0)" >&2; exit 1; }
done

WORK=$(mktemp -d /var/tmp/banger-bench.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building tools"
CGO_ENABLED=0 go build -o "$WORK/banger" ./cmd/banger
go build -o "$WORK/tar2ext4" ./bench/tar2ext4
go build -o "$WORK/genfiles" ./bench/genfiles
go build -o "$WORK/hostsources" ./bench/hostsources

echo "== starting docker-registry on 127.0.0.1"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat > "$WORK/registry.yml" <<CFG
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $REG}
CFG
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://$REG/v2/" >/dev/null && break; sleep 0.1; done

echo "== building test images"
"$WORK/hostsources" bookworm > "$WORK/sources.list"
mmdebstrap --quiet --variant=minbase --format=tar bookworm "$WORK/debian.tar" "$WORK/sources.list"
crane append --insecure -f "$WORK/debian.tar" -t "$REG/bench/debian:1" 2>/dev/null
crane mutate --insecure --set-platform linux/amd64 -t "$REG/bench/debian:1" "$REG/bench/debian:1" 2>/dev/null
"$WORK/genfiles" -dir "$WORK/many" -files 40000 -bytes $((512 << 20))
tar -C "$WORK/many" -cf "$WORK/many.tar" .
crane append --insecure -f "$WORK/many.tar" -t "$REG/bench/many:1" 2>/dev/null
crane mutate --insecure --set-platform linux/amd64 -t "$REG/bench/many:1" "$REG/bench/many:1" 2>/dev/null
rm -rf "$WORK/many" "$WORK/debian.tar" "$WORK/many.tar"
for img in debian many; do
	printf '   %-7s %s files, %s uncompressed\n' "$img" \
		"$(crane export --insecure "$REG/bench/$img:1" - | tar -t | wc -l)" \
		"$(crane export --insecure "$REG/bench/$img:1" - | wc -c | numfmt --to=iec)"
done

now() { date +%s.%N; }

run_banger() { # image -> "seconds peak_kib"
	local img=$1 dir="$WORK/banger-state" start end pid hwm
	rm -rf "$dir"; mkdir -p "$dir"
	"$WORK/banger" daemon --state-dir "$dir" --socket "$dir/sock" --config /nonexistent >"$dir.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do BANGER_SOCKET="$dir/sock" "$WORK/banger" status >/dev/null 2>&1 && break; sleep 0.05; done
	start=$(now)
	BANGER_SOCKET="$dir/sock" "$WORK/banger" image pull "$REG/bench/$img:1" --name "$img" >/dev/null 2>"$dir.pull.log"
	end=$(now)
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
	kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
	echo "$(echo "$end - $start" | bc) $hwm"
}

run_peer_a() {
	local img=$1 d="$WORK/peer-a" start end size
	rm -rf "$d"; mkdir -p "$d"
	start=$(now)
	skopeo copy --quiet --src-tls-verify=false "docker://$REG/bench/$img:1" "oci:$d/oci:$img" >/dev/null
	umoci unpack --image "$d/oci:$img" "$d/bundle" >/dev/null
	size=$(du -sk "$d/bundle/rootfs" | cut -f1)
	mkfs.ext4 -q -F -d "$d/bundle/rootfs" "$d/rootfs.ext4" "$((size * 5 / 4 + 65536))K"
	end=$(now)
	echo "$end - $start" | bc
}

run_peer_b() {
	local img=$1 d="$WORK/peer-b" start end
	rm -rf "$d"; mkdir -p "$d"
	start=$(now)
	crane export --insecure "$REG/bench/$img:1" - | "$WORK/tar2ext4" -o "$d/rootfs.ext4"
	end=$(now)
	echo "$end - $start" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "== running ($RUNS runs each, pipelines interleaved)"
printf '\n%-7s %10s %10s %10s %9s %9s %12s\n' image banger_s peer_a_s peer_b_s banger/a banger/b banger_peak
for img in debian many; do
	: >"$WORK/b" ; : >"$WORK/a"; : >"$WORK/p"; : >"$WORK/m"
	for _ in $(seq "$RUNS"); do
		read -r secs hwm < <(run_banger "$img")
		echo "$secs" >>"$WORK/b"; echo "$hwm" >>"$WORK/m"
		run_peer_a "$img" >>"$WORK/a"
		run_peer_b "$img" >>"$WORK/p"
	done
	b=$(median <"$WORK/b"); a=$(median <"$WORK/a"); p=$(median <"$WORK/p"); m=$(sort -n "$WORK/m" | tail -1)
	printf '%-7s %10.2f %10.2f %10.2f %9.2f %9.2f %9d MiB\n' "$img" "$b" "$a" "$p" \
		"$(echo "$b / $a" | bc -l)" "$(echo "$b / $p" | bc -l)" "$((m / 1024))"
done
echo
echo "banger/a and banger/b are ratios of median wall times (lower is better for banger);"
echo "banger also finalizes, adds a journal and headroom, and runs e2fsck -fn on every image."
