#!/usr/bin/env bash
# Workspace benchmarks, side by side in one run, interleaved, medians:
#
#   1. seeding a checkout of 20,000 files (~500 MB with its history) into a
#      new VM: banger's extra time in `vm run` (seeded minus unseeded)
#      against the peers' ways into a running VM of the same image:
#      `tar | ssh` and git (push over ssh, then checkout), each timed from
#      the host (target: banger's extra <= 0.5x the faster peer);
#   2. `vm pull` of a 1,000-file change from a stopped VM, in seconds;
#      with BASELINE=REV, against the daemon built from git revision REV
#      on the same stopped VM, the two daemons taking turns (the ratio is
#      this tree's time over REV's).
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static git openssh-client. The kernel is Debian's
# linux-image-amd64 from this host's apt sources (or
# BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/workspace.sh [RUNS]   (default 3; FILES=, BYTES= resize;
# BENCH="2" runs only that one; BASELINE=REV compares bench 2 with REV)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
FILES=${FILES:-20000}
BYTES=${BYTES:-$((290 << 20))}   # with its history, about 500 MB
ONLY=${BENCH:-1 2}
want() { case " $ONLY " in *" $1 "*) return 0;; esac; return 1; }
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox git ssh
bench_workdir work
secs() { awk -v s="$1" 'BEGIN {printf "%.2f s", s}'; }

build_banger
go build -o "$WORK/genfiles" ./bench/genfiles
if [ -n "${BASELINE:-}" ]; then
	echo "== building banger at $BASELINE, the baseline"
	mkdir -p "$WORK/base-src"
	git archive "$BASELINE" | tar -x -C "$WORK/base-src"
	(cd "$WORK/base-src" && CGO_ENABLED=0 go build -o "$WORK/banger-base" ./cmd/banger)
fi

DEB=$(kernel_deb)

echo "== the checkout: $FILES files, $((BYTES >> 20)) MiB of text, one commit"
REPO=$WORK/repo
"$WORK/genfiles" -dir "$REPO" -files "$FILES" -bytes "$BYTES" >/dev/null
git -C "$REPO" init -q -b main
git -C "$REPO" add -A
git -C "$REPO" -c user.name=b -c user.email=b@b commit -q -m base
echo "   $(du -sh "$REPO" | cut -f1) in all, .git $(du -sh "$REPO/.git" | cut -f1)"

echo "== daemon, kernel, an image with busybox and git"
cat > "$WORK/config.toml" <<CFG
default_kernel_name = "k"
default_cpus = 2
default_memory_mib = 1024
max_seed_bytes = 4294967296
CFG
start_daemon
IMG=$WORK/img
mkdir -p "$IMG/bin" "$IMG/etc" "$IMG/.banger" "$IMG"/{dev,proc,sys,run,tmp,root,work}
cp "$(command -v busybox)" "$IMG/bin/busybox"
for c in sh true cat tar rm mkdir find sed wc; do ln -s busybox "$IMG/bin/$c"; done
cp "$WORK/banger-agent" "$IMG/.banger/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$IMG/etc/passwd"
for f in $(command -v git) $(ldd "$(command -v git)" | grep -o '/[^ ]*'); do
	mkdir -p "$IMG$(dirname "$f")"
	cp -L "$f" "$IMG$f"
done
mkdir -p "$IMG/usr/bin"
[ -e "$IMG/usr/bin/git" ] || cp -L "$(command -v git)" "$IMG/usr/bin/git"
ln -sf git "$IMG/usr/bin/git-receive-pack"
ln -sf git "$IMG/usr/bin/git-upload-pack"
mkfs.ext4 -q -d "$IMG" "$WORK/img.ext4" 1G
$B image register gitimg --rootfs "$WORK/img.ext4" --kernel k >/dev/null 2>&1
$B vm run --rm --no-workdir --image gitimg -- true >/dev/null 2>&1 # builds the initramfs once

if want 1; then
echo "== 1. seeding the checkout ($RUNS runs of each, interleaved)"
$B vm create --name peer --image gitimg --no-workdir >/dev/null
$B vm start peer >/dev/null 2>&1
PORT=$($B vm show peer -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ssh_port"])')
SSH="ssh -q -p $PORT -i $WORK/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1"
: >"$WORK/seeded"; : >"$WORK/plain"; : >"$WORK/tar"; : >"$WORK/git"; : >"$WORK/cseeded"; : >"$WORK/cplain"
for i in $(seq "$RUNS"); do
	# vm create alone, seeded and not: the seed's cost without a boot's noise.
	s=$(now); (cd "$REPO" && $B vm create --name "cs$i" --image gitimg >/dev/null 2>&1); e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/cseeded"
	s=$(now); (cd "$REPO" && $B vm create --name "cp$i" --no-workdir --image gitimg >/dev/null 2>&1); e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/cplain"
	$B vm rm -f "cs$i" "cp$i" >/dev/null

	s=$(now); (cd "$REPO" && $B vm run --rm --image gitimg -- true >/dev/null 2>"$WORK/seed.log"); e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/seeded"
	s=$(now); (cd "$REPO" && $B vm run --rm --no-workdir --image gitimg -- true >/dev/null 2>&1); e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/plain"

	$SSH 'rm -rf /w; mkdir /w'
	s=$(now); tar -C "$REPO" -cf - . | $SSH 'tar -C /w -xf -'; e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/tar"
	[ "$($SSH 'find /w -type f | wc -l')" -gt "$FILES" ] || { echo "bench: tar | ssh did not land the files" >&2; exit 1; }

	$SSH 'rm -rf /w; git init -q /w'
	s=$(now)
	GIT_SSH_COMMAND="ssh -q -i $WORK/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" \
		git -C "$REPO" push -q "ssh://root@127.0.0.1:$PORT/w" main:refs/heads/main
	$SSH 'git -C /w checkout -q main'
	e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/git"
	echo "   run $i: vm create seeded $(secs "$(tail -1 "$WORK/cseeded")"), unseeded $(secs "$(tail -1 "$WORK/cplain")"); vm run seeded $(secs "$(tail -1 "$WORK/seeded")"), unseeded $(secs "$(tail -1 "$WORK/plain")"); tar|ssh $(secs "$(tail -1 "$WORK/tar")"); git push+checkout $(secs "$(tail -1 "$WORK/git")")"
done
grep -o 'seeding .*' "$WORK/seed.log" | sed 's/^/   /'
SEEDED=$(median <"$WORK/seeded"); PLAIN=$(median <"$WORK/plain"); TAR=$(median <"$WORK/tar"); GIT=$(median <"$WORK/git")
EXTRA=$(awk -v a="$SEEDED" -v b="$PLAIN" 'BEGIN {print a-b}')
FASTER=$(awk -v a="$TAR" -v b="$GIT" 'BEGIN {print (a<b)?a:b}')
CEXTRA=$(awk -v a="$(median <"$WORK/cseeded")" -v b="$(median <"$WORK/cplain")" 'BEGIN {print a-b}')
echo "   banger's extra time in vm create: $(secs "$CEXTRA") (the seed alone, no boot)"
echo "   banger's extra time in vm run: $(secs "$EXTRA") (median seeded $(secs "$SEEDED") - unseeded $(secs "$PLAIN"); boots vary by a second or more under TCG)"
echo "   tar | ssh into a running VM:   $(secs "$TAR")"
echo "   git push + checkout into it:   $(secs "$GIT")"
awk -v x="$EXTRA" -v c="$CEXTRA" -v f="$FASTER" 'BEGIN {printf "   ratio: banger extra / faster peer = %.2f in vm run, %.2f in vm create (target <= 0.5)\n", x/f, c/f}'
$B vm rm -f peer >/dev/null
fi

want 2 || exit 0
echo "== 2. vm pull of a 1,000-file change from a stopped VM ($RUNS runs)"
(cd "$REPO" && $B vm create --name pullme --image gitimg >/dev/null 2>&1)
$B vm start pullme >/dev/null 2>&1
$B vm exec pullme -- sh -c 'cd /work && find d[0-9]* -type f | head -1000 | while read -r f; do echo changed >> "$f"; done'
$B vm stop pullme >/dev/null
: >"$WORK/pull"; : >"$WORK/pull-base"
# restart_with BIN: the daemon on the same state directory, as BIN.
restart_with() {
	kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true
	"$1" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >>"$WORK/daemon.log" 2>&1 &
	DAEMON=$!
	for _ in $(seq 100); do $B status >/dev/null 2>&1 && break; sleep 0.05; done
}
for i in $(seq "$RUNS"); do
	if [ -n "${BASELINE:-}" ]; then
		restart_with "$WORK/banger-base"
		s=$(now); (cd "$REPO" && $B vm pull pullme --force >"$WORK/pull.out"); e=$(now)
		awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/pull-base"
		restart_with "$WORK/banger"
	fi
	s=$(now); (cd "$REPO" && $B vm pull pullme --force >"$WORK/pull.out"); e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN {print e-s}' >>"$WORK/pull"
	echo "   run $i: vm pull $(secs "$(tail -1 "$WORK/pull")")${BASELINE:+, at $BASELINE $(secs "$(tail -1 "$WORK/pull-base")")}"
done
n=$(git -C "$REPO" diff --name-only main banger/pullme | wc -l)
[ "$n" = 1000 ] || { echo "bench: the pulled branch changes $n files, not 1000" >&2; exit 1; }
echo "   vm pull: $(secs "$(median <"$WORK/pull")") median (the branch changes $n files)"
if [ -n "${BASELINE:-}" ]; then
	echo "   vm pull at $BASELINE: $(secs "$(median <"$WORK/pull-base")") median"
	awk -v a="$(median <"$WORK/pull")" -v b="$(median <"$WORK/pull-base")" 'BEGIN {printf "   ratio: this tree / %s = %.2f\n", "'"$BASELINE"'", a/b}'
fi
