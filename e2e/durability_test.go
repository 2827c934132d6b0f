//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
)

// TestSyncedDataSurvivesAKilledVMM: what a guest synced is on its disk
// even when its VMM is SIGKILLed (the OOM killer, a crash), the qcow2
// overlay's metadata included, and the file system stays clean.
func TestSyncedDataSurvivesAKilledVMM(t *testing.T) {
	t.Parallel()
	e, ref := vmEnv(t)
	e.mustBanger("kernel", "pull", "test-deb")
	e.mustBanger("image", "pull", ref, "--name", "bb")
	e.mustBanger("vm", "create", "--name", "d", "--image", "bb", "--disk", "256M", "--no-workdir")
	e.mustBanger("vm", "start", "d")
	// The VMM honours the guest's flushes.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.vm("d").PID)); err != nil || !strings.Contains(string(cmdline), "cache=writeback") {
		t.Fatalf("the VMM's disks are not cache=writeback: %q, %v", strings.ReplaceAll(string(cmdline), "\x00", " "), err)
	}
	guest := func(script string) string {
		t.Helper()
		return e.mustBanger("vm", "exec", "d", "--", "sh", "-c", script)
	}

	sum := guest("busybox dd if=/dev/urandom of=/root/big bs=1M count=50 2>/dev/null && busybox sync && busybox md5sum /root/big")
	e.killVMM("d")
	e.mustBanger("vm", "start", "d")
	if got := guest("busybox md5sum /root/big"); got != sum {
		t.Fatalf("50 MiB synced before the kill: md5 %q after, %q before", got, sum)
	}
	e.fsck("d")

	// A write-heavy load that logs each file once it is synced, and the
	// VMM killed at a random moment in it, 12 times (each a cold boot;
	// the seed is logged, so a failing set of moments can be replayed).
	const load = `i=0
while :; do
	f=/root/f$i
	busybox dd if=/dev/urandom of=$f bs=64k count=8 2>/dev/null
	busybox sync
	busybox md5sum $f >> /root/synced
	busybox sync
	i=$((i+1))
done`
	const verify = `cd /root; n=0
[ -f synced ] || { echo checked 0; exit 0; }
while read -r sum name; do
	[ -n "$name" ] || continue # the line being written when the VMM died
	set -- $(busybox md5sum "$name" 2>&1)
	[ "$1" = "$sum" ] || echo "BAD $name: $1, synced as $sum"
	n=$((n+1))
done < synced
echo checked $n
busybox rm -f f* synced; busybox sync`
	seed := time.Now().UnixNano()
	t.Logf("kill moments from seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	checked := 0
	for i := range 12 {
		e.mustBanger("vm", "start", "d")
		out := guest(verify)
		if strings.Contains(out, "BAD") {
			t.Fatalf("round %d: a synced file is not intact:\n%s", i, out)
		}
		var n int
		if i := strings.LastIndex(out, "checked "); i >= 0 {
			fmt.Sscanf(out[i:], "checked %d", &n)
		}
		checked += n
		guest("sh -c '" + strings.ReplaceAll(load, "'", `'\''`) + "' >/dev/null 2>&1 &")
		time.Sleep(300*time.Millisecond + time.Duration(rnd.Int64N(int64(2200*time.Millisecond))))
		e.killVMM("d")
		if i == 5 {
			e.mustBanger("vm", "start", "d")
			e.fsck("d")
		}
	}
	e.mustBanger("vm", "start", "d")
	if out := guest(verify); strings.Contains(out, "BAD") {
		t.Fatalf("last round: a synced file is not intact:\n%s", out)
	}
	e.fsck("d")
	if checked == 0 {
		t.Fatal("no synced file was ever checked: the load never ran")
	}
	t.Logf("%d synced files checked after 12 kills", checked)
}

// killVMM SIGKILLs a running VM's VMM and waits for the daemon to see it
// stopped.
func (e *env) killVMM(name string) {
	e.t.Helper()
	v := e.vm(name)
	if v.State != api.VMRunning {
		e.t.Fatalf("vm %s is %s, not running", name, v.State)
	}
	if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); e.vm(name).State != api.VMStopped; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("vm %s not stopped 20s after its VMM was killed", name)
		}
	}
}

// fsck stops a running VM cleanly and checks its root file system with
// e2fsck -fn, read through its qcow2 overlay.
func (e *env) fsck(name string) {
	e.t.Helper()
	e.mustBanger("vm", "stop", name)
	v := e.vm(name)
	raw := filepath.Join(e.t.TempDir(), "root.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", filepath.Join(v.Dir, "root.qcow2"), raw).CombinedOutput(); err != nil {
		e.t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	defer os.Remove(raw)
	if out, err := exec.Command("e2fsck", "-fn", raw).CombinedOutput(); err != nil {
		e.t.Fatalf("e2fsck -fn of vm %s's root disk: %v\n%s", name, err, out)
	}
}
