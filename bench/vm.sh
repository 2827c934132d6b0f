#!/usr/bin/env bash
# VM benchmarks, each side by side in one run, printing medians and ratios:
#
#   1. create-to-ready: `banger vm run -- true` against a bare
#      qemu-system-x86_64 command booting the same kernel, initramfs and
#      disk to the same ready marker (target: banger's overhead <= 300 ms);
#   2. boot to ready with banger's initramfs against Debian's own
#      initramfs-tools one for the same kernel (target: >= 3x faster);
#   3. the per-VM root disk of a 2 GiB image (1.5 GiB of data) against
#      `cp --sparse=always` (target: <= 100 ms whatever the size);
#   4. host memory of an idle VM, VMM plus the daemon, guest RAM not
#      counted, against bare qemu (target: <= 10 MiB more).
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils e2fsprogs
# busybox-static mmdebstrap. The kernel is Debian's linux-image-amd64 from
# this host's apt sources (or BANGER_BENCH_KERNEL_DEB=FILE).
# Usage: sudo bench/vm.sh [RUNS]   (default 5; BENCH="1 3" picks benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
ONLY=${BENCH:-1 2 3 4 5}   # BENCH="1 2" runs only those
want() { case " $ONLY " in *" $1 "*) return 0;; esac; return 1; }
export PATH="/usr/local/go/bin:$PATH"
. bench/lib.sh
need_tools qemu-system-x86_64 qemu-img mkfs.ext4 busybox mmdebstrap
bench_workdir vm
QEMU=
cleanup_more() { [ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null || true; }
ms() { awk -v s="$1" 'BEGIN {printf "%.0f ms", s*1000}'; }

build_banger
go build -o "$WORK/hostsources" ./bench/hostsources
go build -o "$WORK/boottime" ./bench/boottime

echo "== kernel and Debian's own initramfs for it (cached in $CACHE)"
DEB=$(kernel_deb)
REL=$(dpkg-deb -f "$DEB" Package | sed 's/^linux-image-//')
if [ ! -f "$CACHE/initrd.img-$REL" ]; then
	"$WORK/hostsources" bookworm > "$WORK/sources.list"
	mmdebstrap --quiet --variant=minbase --include=initramfs-tools,zstd --customize-hook="copy-in $DEB /tmp" \
		--customize-hook="chroot \$1 dpkg -i /tmp/$(basename "$DEB")" \
		--customize-hook="copy-out /boot/initrd.img-$REL $CACHE" bookworm /dev/null "$WORK/sources.list"
fi
echo "   kernel $REL; Debian initramfs $(du -h "$CACHE/initrd.img-$REL" | cut -f1)"

echo "== daemon, kernel, images"
cat > "$WORK/config.toml" <<CFG
default_kernel_name = "k"
default_cpus = 1
default_memory_mib = 512
CFG
start_daemon
KDIR=$($B kernel show k -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["dir"])')
# A small image: busybox and the agent (Debian's initramfs does not bring
# it, as banger's does), with the directories an initramfs moves mounts to.
mkdir -p "$WORK/small/bin" "$WORK/small/etc" "$WORK/small/.banger" "$WORK/small"/{dev,proc,sys,run,tmp,root}
cp "$(command -v busybox)" "$WORK/small/bin/busybox"
cp "$WORK/banger-agent" "$WORK/small/.banger/init"
for c in sh true cat uname; do ln -s busybox "$WORK/small/bin/$c"; done
mkfs.ext4 -q -d "$WORK/small" "$WORK/small.ext4" 64M
$B image register small --rootfs "$WORK/small.ext4" --kernel k >/dev/null 2>&1
# A 2 GiB image with 1.5 GiB of data.
if want 3; then
	mkdir -p "$WORK/big/bin"
	cp -a "$WORK/small/bin/." "$WORK/big/bin/"
	head -c $((1536 << 20)) /dev/urandom > "$WORK/big/data"
	mkfs.ext4 -q -d "$WORK/big" "$WORK/big.ext4" 2G
	rm -rf "$WORK/big"
	$B image register big --rootfs "$WORK/big.ext4" --kernel k >/dev/null 2>&1
fi
$B vm run --rm --image small -- true >/dev/null 2>&1 # builds the initramfs once
INITRD=$(ls "$WORK"/state/cache/initramfs/*.img)
IMG=$($B image show small -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk"])')
if want 3; then BIGIMG=$($B image show big -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk"])'); fi

# bare_boot INITRD INIT_PARAM -> seconds from exec to the ready marker; the
# same qemu options banger uses, written out by hand. Sets QEMU.
bare_boot() {
	local initrd=$1 extra=$2 con="$WORK/bare-console.log" out
	out=$("$WORK/boottime" -console "$con" -- qemu-system-x86_64 \
		-machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on -accel tcg -cpu max \
		-smp 1 -m 512M -nodefaults -no-user-config -nographic -no-reboot -sandbox on \
		-kernel "$KDIR/vmlinux" -initrd "$initrd" -snapshot \
		-append "console=ttyS0 reboot=k panic=-1 quiet cryptomgr.notests 8250.nr_uarts=1 root=/dev/vda rw rootfstype=ext4 banger.name=bare pci=off tsc_early_khz=2000000 $extra" \
		-chardev "file,id=console,path=$con" -serial chardev:console \
		-drive "id=root,file=$IMG,format=raw,if=none,cache=unsafe" -device virtio-blk-device,drive=root \
		-netdev user,id=net0 -device virtio-net-device,netdev=net0)
	QEMU=${out#* }
	echo "${out% *}"
}
stop_bare() {
	kill "$QEMU" 2>/dev/null || true
	while kill -0 "$QEMU" 2>/dev/null; do sleep 0.05; done
	QEMU=
}

if want 1; then
echo "== 1. create-to-ready: banger vm create + vm start vs bare qemu to the ready marker ($RUNS runs)"
# Both clocks stop at the agent's ready line: vm start returns when the
# daemon has seen it, the bare side when boottime has. A command in the
# VM is timed apart: the first SSH session of a fresh guest runs code
# that TCG has not translated yet, and the bare side runs none.
: >"$WORK/c1"; : >"$WORK/q1"; : >"$WORK/r1"; : >"$WORK/f1"; : >"$WORK/x1"
for i in $(seq "$RUNS"); do
	start=$(now)
	$B vm create --name "run$i" --image small >/dev/null 2>&1
	$B vm start "run$i" 2>"$WORK/run.log" >/dev/null
	awk -v s="$start" -v e="$(now)" 'BEGIN {print e-s}' >>"$WORK/c1"
	sed -n 's/.*is ready after \([0-9.]*\)\(m\?s\).*/\1 \2/p' "$WORK/run.log" | awk '{print ($2=="ms") ? $1/1000 : $1}' >>"$WORK/r1"
	start=$(now)
	$B vm exec "run$i" -- true
	awk -v s="$start" -v e="$(now)" 'BEGIN {print e-s}' >>"$WORK/f1"
	start=$(now)
	$B vm exec "run$i" -- true
	awk -v s="$start" -v e="$(now)" 'BEGIN {print e-s}' >>"$WORK/x1"
	$B vm rm -f "run$i" >/dev/null
	bare_boot "$INITRD" "" >"$WORK/t"; cat "$WORK/t" >>"$WORK/q1"; stop_bare
done
c=$(median <"$WORK/c1"); q=$(median <"$WORK/q1"); r=$(median <"$WORK/r1"); f=$(median <"$WORK/f1"); x=$(median <"$WORK/x1")
echo "   banger create-to-ready:       $(ms "$c") (qemu start to ready as the daemon saw it: $(ms "$r"))"
echo "   bare qemu to ready:           $(ms "$q")"
# Boot times here drift by a second between runs (the whole guest runs
# faster or slower, phase by phase), so the overhead is also given as the
# median of each run's difference with the bare boot right after it.
d=$(paste "$WORK/c1" "$WORK/q1" | awk '{print $1-$2}' | median)
echo "   create-to-ready / bare: $(awk -v a="$c" -v b="$q" 'BEGIN {printf "%.2f", a/b}'), overhead $(ms "$(awk -v a="$c" -v b="$q" 'BEGIN {print a-b}')"); median of paired differences $(ms "$d") (target <= 150 ms)"
echo "   per run (banger, bare): $(paste -d, "$WORK/c1" "$WORK/q1" | awk -F, '{printf "%.2f/%.2f ", $1, $2}')"
echo "   then vm exec -- true: first session $(ms "$f"), the next $(ms "$x")"
fi

if want 2; then
echo "== 2. boot to ready: banger's initramfs vs Debian's ($RUNS runs)"
: >"$WORK/bi"; : >"$WORK/di"
for i in $(seq "$RUNS"); do
	bare_boot "$INITRD" "" >"$WORK/t"; cat "$WORK/t" >>"$WORK/bi"; stop_bare
	bare_boot "$CACHE/initrd.img-$REL" "init=/.banger/init" >"$WORK/t"; cat "$WORK/t" >>"$WORK/di"; stop_bare
done
bi=$(median <"$WORK/bi"); di=$(median <"$WORK/di")
echo "   banger initramfs ($(du -h "$INITRD" | cut -f1)): $(ms "$bi")"
echo "   Debian initramfs ($(du -h "$CACHE/initrd.img-$REL" | cut -f1)): $(ms "$di")"
echo "   Debian / banger: $(awk -v a="$di" -v b="$bi" 'BEGIN {printf "%.1f", a/b}')x (target >= 3x)"
fi

if want 3; then
echo "== 3. per-VM disk of a 2 GiB image ($(du -h "$BIGIMG" | cut -f1) allocated): banger vs cp --sparse ($RUNS runs)"
# A default VM gets a 10 GiB disk (default_disk); image register grew the
# image's file system to that size, so the first VM is an overlay as much
# as the later ones. (A VM of another size would make a base of that size
# once: a sparse copy and resize2fs.)
: >"$WORK/dc"; : >"$WORK/dq"; : >"$WORK/dp"
for i in $(seq "$RUNS"); do
	start=$(now)
	$B vm create --name "clone$i" --image big >/dev/null 2>&1
	awk -v s="$start" -v e="$(now)" 'BEGIN {print e-s}' >>"$WORK/dc"
	start=$(now)
	qemu-img create -q -f qcow2 -F raw -b "$BIGIMG" "$WORK/overlay$i.qcow2"
	awk -v s="$start" -v e="$(now)" 'BEGIN {print e-s}' >>"$WORK/dq"
	start=$(now)
	cp --sparse=always "$BIGIMG" "$WORK/copy$i.ext4"
	sync -f "$WORK/copy$i.ext4"
	awk -v s="$start" -v e="$(now)" 'BEGIN {print e-s}' >>"$WORK/dp"
	rm -f "$WORK/copy$i.ext4" "$WORK/overlay$i.qcow2"
done
first=$(head -1 "$WORK/dc"); dc=$(tail -n +2 "$WORK/dc" | median); dq=$(median <"$WORK/dq"); dp=$(median <"$WORK/dp")
for i in $(seq "$RUNS"); do $B vm rm "clone$i" >/dev/null; done
echo "   banger vm create of a default (10 GiB) VM: first $(ms "$first"), then $(ms "$dc"); the overlay alone (qemu-img create): $(ms "$dq")"
echo "   cp --sparse=always + sync:          $(ms "$dp")"
echo "   banger / cp: $(awk -v a="$dc" -v b="$dp" 'BEGIN {printf "%.3f", a/b}') (target: <= 100 ms whatever the size)"
fi

if want 4; then
echo "== 4. idle memory, guest RAM not counted"
# qemu's RSS without the guest RAM mapping (the one anonymous mapping of
# exactly the VM's memory size).
vmm_rss_kib() {
	awk -v ram=$((512 * 1024)) '
		/^[0-9a-f]+-[0-9a-f]+ / {split($1, r, "-"); size = 0; cur = $0}
		/^Size:/ {size = $2}
		/^Rss:/ {if (size != ram) total += $2}
		END {print total}' "/proc/$1/smaps"
}
# Both VMs only boot (no command run in them: under TCG every guest
# instruction executed grows qemu's translation cache), and the daemon is
# restarted once the VM runs, so that its own memory is its steady state,
# not what the image imports above left in its heap.
$B vm create --name idle --image small >/dev/null 2>&1
$B vm start idle >/dev/null 2>&1
kill -TERM "$DAEMON"; wait "$DAEMON" 2>/dev/null || true
"$WORK/banger" daemon --state-dir "$WORK/state" --socket "$WORK/sock" --config "$WORK/config.toml" >>"$WORK/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do $B status >/dev/null 2>&1 && break; sleep 0.05; done
$B vm ls >/dev/null
sleep 10
VPID=$($B vm show idle -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
bv=$(vmm_rss_kib "$VPID"); bd=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")
$B vm rm -f idle >/dev/null
bare_boot "$INITRD" "" >"$WORK/t"
sleep 10
qv=$(vmm_rss_kib "$QEMU"); stop_bare
echo "   banger: qemu $((bv / 1024)) MiB + daemon $((bd / 1024)) MiB = $(((bv + bd) / 1024)) MiB"
echo "   bare qemu: $((qv / 1024)) MiB"
echo "   banger - bare: $(((bv + bd - qv) / 1024)) MiB (target <= 10 MiB); VMM alone: $(((bv - qv) / 1024)) MiB"
fi

if want 5; then
echo "== 5. banger's own qemu command line, replayed by hand, vs the bare one ($RUNS runs)"
# What the daemon ran, read back from the VMM's /proc/PID/cmdline, with a
# fresh overlay and console per run: any difference with the bare line is
# the options', none of it the daemon's.
$B vm create --name replay --image small >/dev/null 2>&1
$B vm start replay >/dev/null 2>&1
VPID=$($B vm show replay -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
cp "/proc/$VPID/cmdline" "$WORK/replay.argv"
OVL=$(tr '\0' '\n' <"$WORK/replay.argv" | grep -o 'file=[^,]*root\.qcow2' | head -1)
BASE=$(qemu-img info -U --output=json "${OVL#file=}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backing-filename"])')
$B vm stop --timeout 0s replay >/dev/null
python3 - "$WORK" <<'PY'
import re, subprocess, sys, json
work = sys.argv[1]
argv = open(work + "/replay.argv", "rb").read().split(b"\0")[:-1]
argv = [a.decode() for a in argv]
out = []
for a in argv:
    a = re.sub(r"path=[^,]*console\.log", "path=" + work + "/replay-console.log", a)
    a = re.sub(r"^unix:[^,]*\.sock", "unix:" + work + "/replay.qmp", a)
    m = re.search(r"file=([^,]*root\.qcow2)", a)
    if m:
        a = a.replace(m.group(1), work + "/replay.qcow2")
    out.append(a)
open(work + "/replay.args", "w").write("\n".join(out[1:]) + "\n")
PY
mapfile -t RARGS < "$WORK/replay.args"
echo "   banger's line: ${RARGS[*]}" | cut -c1-400
: >"$WORK/r5"; : >"$WORK/q5"
for i in $(seq "$RUNS"); do
	rm -f "$WORK/replay.qcow2"
	qemu-img create -q -f qcow2 -F raw -b "$BASE" "$WORK/replay.qcow2"
	out=$("$WORK/boottime" -console "$WORK/replay-console.log" -- qemu-system-x86_64 "${RARGS[@]}")
	echo "${out% *}" >>"$WORK/r5"; QEMU=${out#* }; stop_bare
	bare_boot "$INITRD" "" >"$WORK/t"; cat "$WORK/t" >>"$WORK/q5"; stop_bare
done
r=$(median <"$WORK/r5"); q=$(median <"$WORK/q5")
echo "   banger's line by hand: $(ms "$r"); bare line: $(ms "$q"); difference $(ms "$(awk -v a="$r" -v b="$q" 'BEGIN {print a-b}')")"
$B vm rm -f replay >/dev/null
fi
