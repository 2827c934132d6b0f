//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildWreck builds the hostile guest's raw disk writer.
func buildWreck(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wreckdisk")
	b := exec.Command("go", "build", "-o", bin, "./testdata/wreckdisk")
	b.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("build wreckdisk: %v\n%s", err, out)
	}
	return bin
}

func shmEntries(t *testing.T) []string {
	t.Helper()
	es, _ := os.ReadDir("/dev/shm")
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// lastLine is the CLI's error: its last line of standard error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// holders watches, until stop is called, which processes hold path open,
// and returns the uid of each it saw.
func holders(path string) (stop func() map[int]int) {
	seen := map[int]int{}
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
			for _, fd := range procs {
				if l, err := os.Readlink(fd); err == nil && l == path {
					pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
					if uid, err := procUID(pid); err == nil {
						mu.Lock()
						seen[pid] = uid
						mu.Unlock()
					}
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() map[int]int {
		close(done)
		wg.Wait()
		return seen
	}
}

func procUID(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, os.ErrNotExist
}

// TestHostileGuestDisks: guests that attack their own disks, raw, to make
// the root daemon write where they aim when their work is read back or
// their disk promoted. Each attack is refused with a short error naming
// the rule it broke; the canary the attack aims at stays untouched,
// nothing is left in /dev/shm or the state directory, the daemon goes on
// answering, and the process that parses a guest's disk does not run as
// root.
func TestHostileGuestDisks(t *testing.T) {
	t.Parallel()
	bin := mcpInspector(t)
	e := gitImageEnv(t, "max_pull_entries = 3000\ndefault_disk = \"384M\"\n")
	repo := filepath.Join(e.dir, "repo")
	gitRepo(t, repo)
	e.cwd = repo
	in := &inspector{t: t, bin: bin, e: e, dir: repo}
	wreck := buildWreck(t)
	canaryDir := filepath.Join(e.dir, "canary")
	os.Mkdir(canaryDir, 0o755)
	canary := filepath.Join(canaryDir, "X")
	// The attack's name: enough ".." to reach / from anywhere, then the
	// canary's path; the guest first makes a file of a name as long.
	evil := strings.Repeat("../", 16) + strings.TrimPrefix(canary, "/")
	placeholder := strings.Repeat("p", len(evil))
	shmBefore := shmEntries(t)

	// boot starts a VM seeded from the checkout and gives it the wrecker.
	boot := func(name string) {
		t.Helper()
		e.mustBanger("vm", "run", "--image", "git", "--name", name, "--work-disk", "96M", "--", "true")
		e.mustBanger("vm", "cp", wreck, name+":/root/wreck")
	}
	guest := func(vm, script string) string {
		t.Helper()
		return e.mustBanger("vm", "exec", vm, "--", "sh", "-c", "busybox chmod 755 /root/wreck && "+script)
	}
	const unmount = "busybox sync && busybox umount /work && "
	after := func(t *testing.T) {
		t.Helper()
		if _, err := os.Lstat(canary); err == nil {
			t.Fatal("the attack wrote the canary on the host")
		}
		if es, _ := os.ReadDir(canaryDir); len(es) != 0 {
			t.Fatalf("the attack wrote into the canary's directory: %v", es)
		}
		if now := shmEntries(t); len(now) > len(shmBefore) {
			var extra []string
			for _, n := range now {
				if !slices.Contains(shmBefore, n) {
					extra = append(extra, n)
				}
			}
			if len(extra) > 0 {
				t.Errorf("left in /dev/shm: %v", extra)
			}
		}
		if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
			t.Errorf("left in the state directory's staging: %v", left)
		}
		e.mustBanger("status") // the daemon still answers
	}

	refused := func(t *testing.T, rule string, args ...string) {
		t.Helper()
		out, errOut, code := e.banger(args...)
		if code == 0 {
			t.Fatalf("banger %v succeeded on a hostile disk:\n%s", args, out)
		}
		msg := lastLine(errOut)
		t.Logf("banger %v: %s", args, msg)
		if len(msg) > 300 || !strings.Contains(msg, rule) {
			t.Errorf("banger %v: error %q (%d chars), want under 300 naming %q", args, msg, len(msg), rule)
		}
		after(t)
	}
	t.Run("a name with .. components, through vm diff, vm pull, sandbox_pull and image promote", func(t *testing.T) {
		defer e.use(t)()
		var created struct{ Name string }
		in.call(&created, false, "sandbox_create", "name=a1", "image=git", "work_disk=96M")
		e.mustBanger("vm", "cp", wreck, "a1:/root/wreck")
		// The root disk too, for promote: a directory the guest leaves alone
		// once its block is rewritten under it.
		guest("a1", "busybox mkdir /evil && busybox touch /evil/"+placeholder+" && busybox sync && echo 3 > /proc/sys/vm/drop_caches && /root/wreck rename /dev/vda "+placeholder+" "+evil)
		guest("a1", "busybox touch /work/"+placeholder+" && "+unmount+"/root/wreck rename /dev/vdb "+placeholder+" "+evil)
		e.mustBanger("vm", "stop", "a1")
		refused(t, `names may not hold a "/"`, "vm", "diff", "a1")
		refused(t, `names may not hold a "/"`, "vm", "pull", "a1")
		r := in.call(nil, true, "sandbox_pull", "vm=a1")
		if !strings.Contains(r.text(), `names may not hold a "/"`) {
			t.Errorf("sandbox_pull: %s", r.text())
		}
		after(t)
		refused(t, `names may not hold a "/"`, "image", "promote", "a1", "bad")
		if _, _, code := e.banger("image", "show", "bad"); code == 0 {
			t.Error("a refused promote published its image")
		}
	})

	t.Run("a file of 1 TiB", func(t *testing.T) {
		defer e.use(t)()
		boot("a2")
		guest("a2", "busybox truncate -s 1099511627776 /work/huge && busybox ls -l /work/huge")
		e.mustBanger("vm", "stop", "a2")
		refused(t, "max_pull_bytes", "vm", "diff", "a2")
		refused(t, "max_pull_bytes", "vm", "pull", "a2")
	})

	t.Run("more entries than max_pull_entries; an honest read runs unprivileged", func(t *testing.T) {
		defer e.use(t)()
		boot("a3")
		guest("a3", "busybox mkdir /work/many && cd /work/many && busybox seq 1 2500 | busybox xargs busybox touch && busybox dd if=/dev/urandom of=/work/blob bs=1M count=32 2>/dev/null")
		e.mustBanger("vm", "stop", "a3")
		disk := filepath.Join(e.stateDir, "vms", "a3", "work.ext4")
		stop := holders(disk)
		out := e.mustBanger("vm", "diff", "a3", "--stat")
		seen := stop()
		if !strings.Contains(out, "many/") && !strings.Contains(out, "blob") {
			t.Errorf("vm diff --stat of the honest VM:\n%s", out)
		}
		var reader bool
		for pid, uid := range seen {
			switch {
			case pid == e.daemon.Process.Pid:
				// The daemon opens the disk to hand it over, and closes it.
			case uid == 0:
				t.Errorf("pid %d, uid 0, held the guest's disk open while it was read", pid)
			default:
				reader = true
			}
		}
		if !reader {
			t.Errorf("no unprivileged reader was seen holding the disk (saw %v)", seen)
		}
		e.mustBanger("vm", "start", "a3")
		guest("a3", "cd /work/many && busybox seq 2501 3100 | busybox xargs busybox touch")
		e.mustBanger("vm", "stop", "a3")
		refused(t, "max_pull_entries", "vm", "diff", "a3")
	})

	t.Run("a directory block of random bytes", func(t *testing.T) {
		defer e.use(t)()
		boot("a4")
		guest("a4", "busybox mkdir /work/dirblock && busybox touch /work/dirblock/victim-entry-name-4242 && "+unmount+"/root/wreck randomize /dev/vdb victim-entry-name-4242")
		e.mustBanger("vm", "stop", "a4")
		refused(t, "directory", "vm", "diff", "a4")
		refused(t, "directory", "vm", "pull", "a4")
	})
}
