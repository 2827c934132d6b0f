//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/wire/api"
)

func (e *env) templates() []api.Template {
	e.t.Helper()
	var ts []api.Template
	if err := json.Unmarshal([]byte(e.mustBanger("template", "ls", "-o", "json")), &ts); err != nil {
		e.t.Fatal(err)
	}
	return ts
}

// runVM runs `vm run` and returns its output and progress.
func (e *env) runVM(args ...string) (string, string) {
	e.t.Helper()
	out, errOut, code := e.banger(append([]string{"vm", "run"}, args...)...)
	if code != 0 {
		e.t.Fatalf("vm run %v: exit %d\n%s", args, code, errOut)
	}
	return out, errOut
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	e, ref := vmEnv(t)
	// The first VM of a kind boots a template and resumes from it.
	cold, progress := e.runVM("--rm", "--image", ref, "--", "busybox", "cat", "/etc/motd")
	if !strings.Contains(progress, "booting one") || !strings.Contains(progress, "resuming vm") {
		t.Fatalf("the first start made no template:\n%s", progress)
	}
	ts := e.templates()
	if len(ts) != 1 || ts[0].Bytes == 0 || ts[0].CPUs != 1 || ts[0].MemoryMB != 256 || ts[0].Problem != "" {
		t.Fatalf("templates after the first start: %+v", ts)
	}
	tpl := ts[0]
	// The next one resumes from it, and sees the same system.
	warm, progress := e.runVM("--rm", "--image", ref, "--", "busybox", "cat", "/etc/motd")
	if strings.Contains(progress, "booting") || !strings.Contains(progress, "resuming vm") || !strings.Contains(progress, tpl.ID) {
		t.Errorf("the second start did not resume from template %s:\n%s", tpl.ID, progress)
	}
	if warm != cold || warm != "hello\n" {
		t.Errorf("/etc/motd: cold %q, from the template %q", cold, warm)
	}

	// Two clones at once: each its own hostname, host key and random
	// stream. The clock is the host's although the template's stopped
	// when it was saved, which the wait makes seconds ago at least.
	if wait := time.Until(tpl.CreatedAt.Add(6 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	var wg sync.WaitGroup
	for _, n := range []string{"c1", "c2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, errOut, code := e.banger("vm", "run", "--name", n, "--image", ref, "--", "true"); code != 0 {
				t.Errorf("vm run %s: exit %d\n%s", n, code, errOut)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	random := map[string]bool{}
	keys := map[string]bool{}
	for _, n := range []string{"c1", "c2"} {
		v := e.vm(n)
		if v.Template != tpl.ID {
			t.Errorf("vm %s: template %q, want %q", n, v.Template, tpl.ID)
		}
		if h := strings.TrimSpace(e.mustBanger("vm", "exec", n, "--", "busybox", "hostname")); h != n {
			t.Errorf("vm %s's hostname is %q", n, h)
		}
		// What the guest serves, as ssh-keyscan would read it (which
		// itself gets nothing from the agent's Go SSH server).
		served := scanHostKey(t, v.SSHPort)
		if served != v.HostKey {
			t.Errorf("vm %s serves host key %s, the daemon pinned %s", n, served, v.HostKey)
		}
		keys[served] = true
		random[e.mustBanger("vm", "exec", n, "--", "sh", "-c", "busybox head -c 16 /dev/urandom | busybox od -An -tx1")] = true
		// The guest's clock is read while the host's is read before and
		// after: a loaded host's exec can take seconds, a clock left as
		// the template had it is off by the template's age.
		before := time.Now().Unix()
		guest, _ := strconv.ParseInt(strings.TrimSpace(e.mustBanger("vm", "exec", n, "--", "busybox", "date", "+%s")), 10, 64)
		if after := time.Now().Unix(); guest < before-1 || guest > after+1 {
			t.Errorf("vm %s's clock reads %d, outside the host's %d..%d (template saved %s ago)", n, guest, before, after, time.Since(tpl.CreatedAt).Round(time.Second))
		}
	}
	if len(keys) != 2 || len(random) != 2 {
		t.Errorf("two clones share host keys (%d distinct) or random bytes (%d distinct)", len(keys), len(random))
	}
	for _, n := range []string{"c1", "c2"} {
		if used := e.templates()[0].UsedBy; !strings.Contains(strings.Join(used, ","), n) {
			t.Errorf("template used by %v, not %s", used, n)
		}
	}
	// Removing the template harms no clone: each links its disk.
	e.mustBanger("template", "rm", tpl.ID)
	e.mustBanger("vm", "stop", "c1")
	e.mustBanger("vm", "start", "c1")
	if h := strings.TrimSpace(e.mustBanger("vm", "exec", "c1", "--", "busybox", "hostname")); h != "c1" {
		t.Errorf("c1 after a restart without its template: hostname %q", h)
	}
	e.mustBanger("vm", "rm", "-f", "c1", "c2")

	// A template made by another VMM build is made again, never loaded.
	e.runVM("--rm", "--image", ref, "--", "true")
	tpl = e.templates()[0]
	meta := filepath.Join(e.stateDir, "templates", tpl.ID, "template.json")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, []byte(strings.Replace(string(b), tpl.VMM, "qemu QEMU emulator version 1.0.0", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, progress = e.runVM("--rm", "--image", ref, "--", "true")
	if !strings.Contains(progress, `VMM "qemu QEMU emulator version 1.0.0"`) || !strings.Contains(progress, "booting one") {
		t.Errorf("a template of another qemu was not refused and made again:\n%s", progress)
	}
	if again := e.templates(); len(again) != 1 || again[0].VMM != tpl.VMM || !again[0].CreatedAt.After(tpl.CreatedAt) {
		t.Errorf("templates after the rebuild: %+v", again)
	}

	// A template whose files were deleted by hand: a line, a cold boot.
	tpl = e.templates()[0]
	if err := os.Remove(filepath.Join(e.stateDir, "templates", tpl.ID, "memory")); err != nil {
		t.Fatal(err)
	}
	out, progress := e.runVM("--rm", "--image", ref, "--", "echo", "ok")
	if strings.TrimSpace(out) != "ok" || !strings.Contains(progress, "lost its memory") {
		t.Errorf("after the template's memory was deleted: %q\n%s", out, progress)
	}

	// The daemon killed while a template is written: none listed, none
	// left running, and the next start makes one.
	cmd, lines := e.startBanger("vm", "run", "--rm", "--image", ref, "--memory", "320", "--", "true")
	waitLine(t, lines, "booting one")
	e.kill()
	cmd.Wait()
	e.start()
	for _, tp := range e.templates() {
		if tp.MemoryMB == 320 {
			t.Errorf("a template whose writing was killed is listed: %+v", tp)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(e.stateDir, "templates", ".*")); len(left) != 0 {
		t.Errorf("unfinished templates left: %v", left)
	}
	if pids := pidsWith(e.stateDir, "templates/.build-"); len(pids) != 0 {
		t.Errorf("a template's VMM outlived the restart: %v", pids)
	}
	_, progress = e.runVM("--rm", "--image", ref, "--memory", "320", "--", "true")
	if !strings.Contains(progress, "booting one") {
		t.Errorf("the next start made no template:\n%s", progress)
	}
}

// A running VM forked: the fork has its processes and /tmp, an identity
// of its own; the original runs on unchanged; each is removed on its own.
func TestForkAndSnapshot(t *testing.T) {
	t.Parallel()
	e, ref := vmEnv(t)
	start := "busybox setsid busybox sleep 1000 </dev/null >/dev/null 2>&1 & echo in-tmp > /tmp/f; echo on-disk > /root/d; busybox sync"
	e.runVM("--name", "orig", "--image", ref, "--", "sh", "-c", start)
	state := func(vm string) string {
		return e.mustBanger("vm", "exec", vm, "--", "sh", "-c", "busybox hostname; busybox ps -o pid,args | busybox grep '[s]leep 1000'; busybox cat /tmp/f /root/d")
	}
	before, origKey := state("orig"), e.vm("orig").HostKey
	_, errOut, code := e.banger("vm", "fork", "orig", "child")
	if code != 0 {
		t.Fatalf("vm fork: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "was paused") {
		t.Errorf("the fork does not say how long the VM was paused:\n%s", errOut)
	}
	if after := state("orig"); after != before || e.vm("orig").HostKey != origKey {
		t.Errorf("the original changed: %q, was %q", after, before)
	}
	child := e.vm("child")
	if want := strings.Replace(before, "orig\n", "child\n", 1); state("child") != want {
		t.Errorf("the fork: %q, want %q (the original's processes and files, its own name)", state("child"), want)
	}
	if child.HostKey == "" || child.HostKey == origKey {
		t.Errorf("the fork's host key %q, the original's %q", child.HostKey, origKey)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "snapshots")); len(left) != 0 {
		t.Errorf("the fork's snapshot was left: %v", left)
	}
	// Independent: the original goes, the fork runs, restarts, goes.
	e.mustBanger("vm", "rm", "-f", "orig")
	e.mustBanger("vm", "stop", "child")
	e.mustBanger("vm", "start", "child")
	if got := e.mustBanger("vm", "exec", "child", "--", "busybox", "cat", "/root/d"); got != "on-disk\n" {
		t.Errorf("the fork after a restart without its original: %q", got)
	}

	// A named snapshot, forked by vm run, listed, removed. (/tmp and the
	// sleep went with the restart.)
	e.mustBanger("vm", "exec", "child", "--", "sh", "-c", start)
	out := e.mustBanger("vm", "snapshot", "child", "snap1")
	if !strings.Contains(out, "snapshot snap1 of vm child") {
		t.Errorf("vm snapshot: %q", out)
	}
	var ss []api.Snapshot
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "snapshot", "ls", "-o", "json")), &ss); err != nil || len(ss) != 1 || ss[0].VM != "child" || ss[0].Bytes == 0 {
		t.Fatalf("snapshot ls: %+v, %v", ss, err)
	}
	got, _ := e.runVM("--rm", "--from-snapshot", "snap1", "--", "sh", "-c", "busybox cat /tmp/f; busybox ps -o args | busybox grep -q '[s]leep 1000' && echo sleeping")
	if got != "in-tmp\nsleeping\n" {
		t.Errorf("vm run --from-snapshot: %q", got)
	}
	if _, errOut, code := e.banger("vm", "snapshot", "stopped-vm"); code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("snapshot of a VM that does not exist: exit %d, %s", code, errOut)
	}
	e.mustBanger("vm", "stop", "child")
	if _, errOut, code := e.banger("vm", "snapshot", "child"); code == 0 || !strings.Contains(errOut, "a snapshot saves a running VM") {
		t.Errorf("snapshot of a stopped VM: exit %d, %s", code, errOut)
	}
	e.mustBanger("vm", "rm", "child")
	// The snapshot needs its image's disk: image rm refuses.
	if _, errOut, code := e.banger("image", "rm", child.Image); code == 0 || !strings.Contains(errOut, `snapshot "snap1"`) {
		t.Errorf("image rm under a snapshot: exit %d, %s", code, errOut)
	}
	e.mustBanger("vm", "snapshot", "rm", "snap1")
	if left := dirEntries(t, filepath.Join(e.stateDir, "snapshots")); len(left) != 0 {
		t.Errorf("snapshots left: %v", left)
	}
}

// scanHostKey returns the fingerprint of the host key an SSH server on a
// 127.0.0.1 port offers, without logging in.
func scanHostKey(t *testing.T, port int) string {
	t.Helper()
	var got string
	errScanned := errors.New("scanned")
	_, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &ssh.ClientConfig{
		User: "root", Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			got = ssh.FingerprintSHA256(k)
			return errScanned
		},
	})
	if got == "" {
		t.Fatalf("no host key from 127.0.0.1:%d: %v", port, err)
	}
	return got
}
