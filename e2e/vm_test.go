//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
)

// vmEnv is a daemon with the Debian kernel from its .deb as the default
// kernel and a busybox image in a registry on 127.0.0.1, which VMs name by
// its reference (pulled on first use).
func vmEnv(t *testing.T) (*env, string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); .ci/run installs it")
	}
	reg := startRegistry(t)
	ref := reg + "/test/busybox:1"
	push(t, ref, image(t, gzipLayer(t, tarOf(t, busyboxLayer(t)))))
	fs := newFileServer(t)
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\ndefault_kernel_name = \"test-deb\"\ndefault_cpus = 1\ndefault_memory_mib = 256\n")
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
	e.withKernel()
	e.start()
	return e, ref
}

func (e *env) vm(name string) api.VM {
	e.t.Helper()
	var v api.VM
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "show", name, "-o", "json")), &v); err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) vms() []api.VM {
	e.t.Helper()
	var vs []api.VM
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "ls", "-o", "json")), &vs); err != nil {
		e.t.Fatal(err)
	}
	return vs
}

func vmNames(vs []api.VM) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name+"="+v.State)
	}
	return out
}

// TestVMs drives the VM lifecycle for real under TCG, through the CLI as
// a user would, on one daemon (booting is the slow part, the kernel pull
// happens once).
func TestVMs(t *testing.T) {
	t.Parallel()
	e, ref := vmEnv(t)
	k := func() api.Kernel {
		e.mustBanger("kernel", "pull", "test-deb")
		return listKernels(t, e)[0]
	}()

	t.Run("run prints the Debian kernel's release", func(t *testing.T) {
		defer e.use(t)()
		out, errOut, code := e.banger("vm", "run", "--rm", "--image", ref, "--", "uname", "-r")
		if code != 0 || strings.TrimSpace(out) != k.Release {
			t.Fatalf("vm run -- uname -r: exit %d, %q; want %s\n%s", code, out, k.Release, errOut)
		}
		for _, stage := range []string{"pulling it from " + ref, "building banger's initramfs", "is ready after"} {
			if !strings.Contains(errOut, stage) {
				t.Errorf("progress lacks %q:\n%s", stage, errOut)
			}
		}
		if vs := e.vms(); len(vs) != 0 {
			t.Errorf("--rm left %v", vmNames(vs))
		}
	})

	t.Run("each VM records its accelerator, as status says", func(t *testing.T) {
		defer e.use(t)()
		e.mustBanger("vm", "run", "--name", "acc", "--image", "busybox-1", "--", "true")
		st := e.status()
		if v := e.vm("acc"); v.Accel == "" || v.Accel != st.Accel.Summary {
			t.Errorf("vm acc booted with %q, status says %q", v.Accel, st.Accel.Summary)
		}
		e.mustBanger("vm", "rm", "-f", "acc")
	})

	t.Run("accel modes: kvm refused fast where KVM is broken, tcg boots", func(t *testing.T) {
		defer e.use(t)()
		accelModes(t, e)
	})

	t.Run("a default VM has a 10 GiB root disk with room, thin on the host", func(t *testing.T) {
		defer e.use(t)()
		e.mustBanger("vm", "create", "--name", "roomy", "--image", "busybox-1")
		v := e.vm("roomy")
		if v.DiskBytes != 10<<30 {
			t.Fatalf("default disk %d bytes, want 10 GiB", v.DiskBytes)
		}
		var overlay syscall.Stat_t
		if err := syscall.Stat(filepath.Join(v.Dir, "root.qcow2"), &overlay); err != nil || overlay.Blocks*512 > 4<<20 {
			t.Errorf("the VM's disk is not a thin overlay: %v, %d bytes allocated", err, overlay.Blocks*512)
		}
		im := findImage(t, listImages(t, e), "busybox-1")
		if im.Size != 10<<30 || im.Stored > 200<<20 {
			t.Errorf("image: file system %d bytes, %d stored; want 10 GiB, mostly holes", im.Size, im.Stored)
		}
		e.mustBanger("vm", "start", "roomy")
		out := e.mustBanger("vm", "exec", "roomy", "--", "df", "-k", "/")
		f := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])
		if avail, err := strconv.ParseInt(f[3], 10, 64); err != nil || avail < 8<<20 {
			t.Errorf("df -k / in the guest:\n%s\nwant at least 8 GiB available", out)
		}
		e.mustBanger("vm", "rm", "-f", "roomy")
	})

	t.Run("run passes the exit code through", func(t *testing.T) {
		defer e.use(t)()
		if _, errOut, code := e.banger("vm", "run", "--rm", "--image", "busybox-1", "--", "sh", "-c", "exit 7"); code != 7 {
			t.Fatalf("exit %d, want 7\n%s", code, errOut)
		}
	})

	t.Run("after each of 8 cold starts the first exec answers at once", func(t *testing.T) {
		defer e.use(t)()
		// A cold start is a boot (a restart after vm stop does not resume
		// from a template); the first session goes through passt's
		// forward, which once stalled 10 s until passt had seen a frame
		// from the guest. 5 s tells that stall from a session on a loaded
		// host (up to 3.6 s seen with the suite sharing 2 cores).
		e.mustBanger("vm", "create", "--name", "cold", "--image", "busybox-1")
		var slow []string
		for i := range 8 {
			e.mustBanger("vm", "start", "cold")
			start := time.Now()
			e.mustBanger("vm", "exec", "cold", "--", "true")
			if d := time.Since(start); d > 5*time.Second {
				slow = append(slow, fmt.Sprintf("start %d: %s", i+1, d.Round(time.Millisecond)))
			}
			e.mustBanger("vm", "stop", "cold")
		}
		if len(slow) > 0 {
			t.Errorf("first exec after a cold start took over 5 s: %v", slow)
		}
		e.mustBanger("vm", "rm", "cold")
	})

	t.Run("cp, stop and start keep the disk, ssh line works", func(t *testing.T) {
		defer e.use(t)()
		web := freePort(t)
		e.mustBanger("vm", "create", "--name", "keep", "--image", "busybox-1", "--disk", "256M", "-p", fmt.Sprintf("%d:8080", web))
		if v := e.vm("keep"); v.State != api.VMStopped || v.DiskBytes != 256<<20 {
			t.Fatalf("created: %+v", v)
		}
		e.mustBanger("vm", "start", "keep")
		// The VMM dropped root once started, to a uid of its own, under
		// a seccomp filter; its disk (the guest's host key is on it) is
		// root's alone.
		if os.Geteuid() == 0 {
			v := e.vm("keep")
			if uid := vmmUID(t, v.PID); uid < 1900000000 || uid >= 1900000000+65536 {
				t.Errorf("the VMM runs as uid %d, not one of banger's (vmm_uid_base 1900000000)", uid)
			}
			if st := procStatus(t, v.PID, "Seccomp"); st != "2" {
				t.Errorf("the VMM's Seccomp: %q, want 2 (filtering)", st)
			}
			for _, disk := range []string{"root.qcow2", "root.ext4"} {
				if fi, err := os.Stat(filepath.Join(v.Dir, disk)); err == nil {
					if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || st.Uid != 0 {
						t.Errorf("%s: %s, uid %d; want 0600 root's", disk, fi.Mode(), st.Uid)
					}
				}
			}
		}
		data := make([]byte, 3<<20+17)
		rand.Read(data)
		src := filepath.Join(t.TempDir(), "blob")
		os.WriteFile(src, data, 0o640)
		e.mustBanger("vm", "cp", src, "keep:/root/")
		if out := e.mustBanger("vm", "exec", "keep", "--", "sh", "-c", "wc -c < /root/blob; df -k / | tail -1"); !strings.Contains(out, fmt.Sprint(len(data))) {
			t.Fatalf("size in the guest: %q", out)
		}
		// The published port reaches a server in the guest.
		e.mustBanger("vm", "exec", "keep", "--", "busybox", "httpd", "-p", "8080", "-h", "/root")
		var body []byte
		for try := 0; try < 50; try++ {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/blob", web))
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !bytes.Equal(body, data) {
			t.Errorf("GET through -p %d:8080: %d bytes, want the %d copied in", web, len(body), len(data))
		}
		back := filepath.Join(t.TempDir(), "back")
		e.mustBanger("vm", "cp", "keep:/root/blob", back)
		if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
			t.Fatalf("copied back %d bytes, differing from the %d sent", len(got), len(data))
		}
		e.mustBanger("vm", "exec", "keep", "--", "sh", "-c", "echo survived > /root/note")
		if _, errOut, code := e.banger("vm", "rm", "keep"); code == 0 || !strings.Contains(errOut, "rm -f") {
			t.Fatalf("rm of a running VM: exit %d, %s", code, errOut)
		}
		e.mustBanger("vm", "stop", "keep")
		if v := e.vm("keep"); v.State != api.VMStopped {
			t.Fatalf("after stop: %s", v.State)
		}
		e.mustBanger("vm", "start", "keep")
		if out := e.mustBanger("vm", "exec", "keep", "--", "cat", "/root/note"); strings.TrimSpace(out) != "survived" {
			t.Fatalf("after stop and start: %q", out)
		}
		// The printed ssh line works with the system's own client.
		show := e.mustBanger("vm", "show", "keep")
		i := strings.Index(show, "ssh -p ")
		if i < 0 {
			t.Fatalf("vm show prints no ssh line:\n%s", show)
		}
		line := strings.Fields(strings.SplitN(show[i:], "\n", 2)[0])
		if _, err := exec.LookPath("ssh"); err == nil {
			args := append([]string{"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"}, line[1:]...)
			args = append(args, "hostname")
			out, err := exec.Command("ssh", args...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "keep") {
				t.Errorf("%s hostname: %v\n%s", strings.Join(line, " "), err, out)
			}
		}
		if logs := e.mustBanger("vm", "logs", "keep"); strings.Count(logs, "banger-agent: ready") != 2 {
			t.Errorf("vm logs should show both boots' ready lines:\n%s", logs)
		}
	})

	t.Run("three VMs at once, each answers", func(t *testing.T) {
		defer e.use(t)()
		var wg sync.WaitGroup
		errs := make([]string, 3)
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, errOut, code := e.banger("vm", "run", "--name", fmt.Sprintf("par%d", i), "--image", "busybox-1", "--", "true")
				if code != 0 {
					errs[i] = fmt.Sprintf("par%d: exit %d\n%s%s", i, code, out, errOut)
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Fatal(e)
			}
		}
		uids := map[int]string{}
		for i := range 3 {
			name := fmt.Sprintf("par%d", i)
			if out := e.mustBanger("vm", "exec", name, "--", "hostname"); strings.TrimSpace(out) != name {
				t.Errorf("%s says it is %q", name, out)
			}
			if os.Geteuid() == 0 {
				uid := vmmUID(t, e.vm(name).PID)
				if other, ok := uids[uid]; ok {
					t.Errorf("%s and %s share the VMM uid %d", name, other, uid)
				}
				uids[uid] = name
			}
		}
	})

	t.Run("daemon SIGKILLed while VMs run: they keep running", func(t *testing.T) {
		defer e.use(t)()
		e.kill()
		e.start()
		running := 0
		for _, v := range e.vms() {
			if v.State == api.VMRunning {
				running++
			}
		}
		if running != 4 {
			t.Fatalf("after restart: %v, want keep and par0..2 running", vmNames(e.vms()))
		}
		if out := e.mustBanger("vm", "exec", "par1", "--", "hostname"); strings.TrimSpace(out) != "par1" {
			t.Fatalf("exec after restart: %q", out)
		}
	})

	t.Run("a VMM killed by hand shows its VM stopped", func(t *testing.T) {
		defer e.use(t)()
		v := e.vm("par2")
		if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for e.vm("par2").State != api.VMStopped {
			if time.Now().After(deadline) {
				t.Fatalf("par2 still %s", e.vm("par2").State)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, errOut, code := e.banger("vm", "exec", "par2", "--", "true"); code == 0 || !strings.Contains(errOut, "vm start par2") {
			t.Errorf("exec on the stopped VM: exit %d, %s", code, errOut)
		}
		e.mustBanger("vm", "rm", "-f", "par0", "par1", "par2", "keep")
	})

	t.Run("bad input: clear errors, nothing left", func(t *testing.T) {
		defer e.use(t)()
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		port := busy.Addr().(*net.TCPAddr).Port
		for _, c := range []struct {
			name string
			args []string
			want string
		}{
			{"no such image", []string{"--image", "no-such-image"}, `no image catalog entry named "no-such-image"`},
			{"no such kernel", []string{"--image", "busybox-1", "--kernel", "no-such-kernel"}, `no-such-kernel`},
			{"memory 1", []string{"--image", "busybox-1", "--memory", "1"}, "at least 128 MiB"},
			{"cpus 0", []string{"--image", "busybox-1", "--cpus", "0"}, "at least 1 CPU"},
			{"bad port", []string{"--image", "busybox-1", "-p", "99999:80"}, "HOST:GUEST"},
			{"port in use", []string{"--image", "busybox-1", "-p", fmt.Sprintf("%d:80", port)}, fmt.Sprintf("port %d on 127.0.0.1, which is in use there", port)},
			{"bad name", []string{"--name", "../x"}, "not valid"},
		} {
			args := append(append([]string{"vm", "run"}, c.args...), "--", "true")
			if _, errOut, code := e.banger(args...); code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("%s: exit %d, want an error with %q:\n%s", c.name, code, c.want, errOut)
			}
		}
		e.mustBanger("vm", "create", "--name", "taken", "--image", "busybox-1")
		if _, errOut, code := e.banger("vm", "run", "--name", "taken", "--", "true"); code == 0 || !strings.Contains(errOut, `"taken" already exists`) {
			t.Errorf("name in use: exit %d, %s", code, errOut)
		}
		if _, errOut, code := e.banger("kernel", "rm", "test-deb"); code == 0 || !strings.Contains(errOut, "taken") {
			t.Errorf("kernel rm while a VM uses it: exit %d, %s", code, errOut)
		}
		if _, errOut, code := e.banger("image", "rm", "busybox-1"); code == 0 || !strings.Contains(errOut, "taken") {
			t.Errorf("image rm while a VM uses it: exit %d, %s", code, errOut)
		}
		e.mustBanger("vm", "rm", "taken")
		if vs := e.vms(); len(vs) != 0 {
			t.Errorf("left behind: %v", vmNames(vs))
		}
		if left := dirEntries(t, filepath.Join(e.stateDir, "vms")); len(left) != 0 {
			t.Errorf("VM directories left behind: %v", left)
		}
	})

	t.Run("a guest that never becomes ready", func(t *testing.T) {
		defer e.use(t)()
		// The bare vmlinux, without banger's initramfs, cannot reach its
		// root disk (virtio_blk is a module): the kernel panics.
		e.mustBanger("kernel", "import", "panicky", "--kernel", filepath.Join(k.Dir, "vmlinux"))
		_, errOut, code := e.banger("vm", "run", "--image", "busybox-1", "--kernel", "panicky", "--", "true")
		if code == 0 || !strings.Contains(errOut, "stopped before it was ready") || !strings.Contains(errOut, "Kernel panic") {
			t.Errorf("panicking kernel: exit %d, want the console's panic:\n%s", code, errOut)
		}
		// A timeout shorter than any boot (of a kind with no template
		// yet: a resume from one takes less).
		start := time.Now()
		_, errOut, code = e.banger("vm", "run", "--image", "busybox-1", "--memory", "200", "--timeout", "1s", "--", "true")
		// Under "quiet" the console may still be empty after 1 s of TCG:
		// the error then says so instead of showing its last lines.
		if code == 0 || !strings.Contains(errOut, "not ready after 1s") || !strings.Contains(errOut, "  | ") && !strings.Contains(errOut, "(the console is empty)") {
			t.Errorf("timeout: exit %d, want the console's last lines:\n%s", code, errOut)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("gave up after %s", d)
		}
		if vs := e.vms(); len(vs) != 0 {
			t.Errorf("failed runs left %v", vmNames(vs))
		}
	})
}

// procStatus returns a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of pid %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == field+":" {
			return f[1]
		}
	}
	return ""
}

// vmmUID is the real uid a VMM process runs as.
func vmmUID(t *testing.T, pid int) int {
	t.Helper()
	uid, err := vmm.UID(pid)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// TestMissingVMMUserStartsNothing: with vmm_user naming a user that does
// not exist, a root daemon starts no VMM at all (none as root), and says
// how to fix it before anything is pulled or made.
func TestMissingVMMUserStartsNothing(t *testing.T) {
	t.Parallel()
	testkit.NeedRoot(t, "a daemon whose VMMs drop privilege")
	e := newEnv(t, "vmm_user = \"banger-no-such-user\"\n")
	e.start()
	_, errOut, code := e.banger("vm", "run", "--", "true")
	if code == 0 || !strings.Contains(errOut, `vmm_user "banger-no-such-user" does not exist`) || !strings.Contains(errOut, "useradd") {
		t.Fatalf("vm run: exit %d, %s", code, errOut)
	}
	if pid := procWith(t, "qemu-system", e.stateDir); pid != 0 {
		t.Fatalf("a VMM (pid %d) started anyway", pid)
	}
	if vs := e.vms(); len(vs) != 0 {
		t.Fatalf("VMs made: %v", vmNames(vs))
	}
}
