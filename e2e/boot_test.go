//go:build e2e

package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/format/initramfs"
	"github.com/banger-dev/banger/internal/guest/agent"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu"
)

// TestBootToReady boots, under qemu's software emulation, a Debian kernel
// pulled from its .deb with banger's own initramfs and an image pulled from
// the local registry with the guest agent injected, and waits for the
// agent's ready line. The VM lifecycle around it is not built yet; this
// proves the boot path it will use.
func TestBootToReady(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); .ci/run installs it")
	}
	reg := startRegistry(t)
	push(t, reg+"/test/busybox:1", image(t, gzipLayer(t, tarOf(t, busyboxLayer(t)))))
	fs := newFileServer(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	user, _ := ssh.NewSignerFromKey(priv)
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\nagent_path = \""+agentBin+"\"\nssh_public_keys = [\"user.pub\"]\n")
	e.write("user.pub", string(ssh.MarshalAuthorizedKey(user.PublicKey())))
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
	e.withKernel()
	e.start()
	e.mustBanger("kernel", "pull", "test-deb")
	e.mustBanger("image", "pull", reg+"/test/busybox:1", "--kernel", "test-deb")
	k := listKernels(t, e)[0]
	im := findImage(t, listImages(t, e), "busybox-1")
	if got := debugfs(t, im.Disk, "stat /.banger/init"); !strings.Contains(got, "Mode:  0755") {
		t.Fatalf("agent not injected as /.banger/init:\n%s", got)
	}

	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	f, _ := os.Create(initrd)
	mods, err := initramfs.Build(f, agentBin, filepath.Join(k.Dir, "modules", k.Release))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "root.ext4")
	// Images are thin (a big file system, mostly holes): copy them so.
	if out, err := exec.Command("cp", "--sparse=always", im.Disk, disk).CombinedOutput(); err != nil {
		t.Fatalf("copy image: %v: %s", err, out)
	}
	tcg := vmm.Accel{Name: "tcg", CPU: "max"}

	cfg := vmm.Config{
		Name: "boot-test", CPUs: 1, MemoryMB: 512,
		Kernel: filepath.Join(k.Dir, "vmlinux"), Initrd: initrd,
		Cmdline: "console=ttyS0 root=/dev/vda rw panic=-1 banger.ip=10.0.2.15/24 banger.gw=10.0.2.2 " + strings.Join(qemu.GuestParams(tcg, qemu.HostTSCKHz()), " "),
		Disks:   []vmm.Disk{{ID: "root", Path: disk, Format: "raw"}},
		Network: vmm.Network{Forwards: []vmm.Forward{{HostPort: freePort(t), GuestPort: 22}}},
		Console: filepath.Join(dir, "console.log"), Control: filepath.Join(dir, "qmp.sock"),
		Accel: tcg,
	}
	cmd := exec.Command("qemu-system-x86_64", qemu.Args(cfg, qemu.Options{})...)
	out, _ := os.Create(filepath.Join(dir, "qemu.log"))
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		b, _ := os.ReadFile(cfg.Console)
		if strings.Contains(string(b), agent.ReadyMarker) {
			line := string(b)[strings.Index(string(b), agent.ReadyMarker):]
			line = strings.SplitN(line, "\n", 2)[0]
			if !strings.Contains(line, "kernel "+k.Release) || !strings.Contains(line, "root rw") {
				t.Fatalf("ready line %q: want kernel %s and a writable root", line, k.Release)
			}
			t.Logf("ready after %s with %d modules: %s", time.Since(start).Round(time.Millisecond), len(mods), line)
			checkSSH(t, string(b), cfg.Network.Forwards[0].HostPort, user, k.Release)
			return
		}
		if ctx.Err() != nil {
			tail := string(b)
			if len(tail) > 3000 {
				tail = tail[len(tail)-3000:]
			}
			qlog, _ := os.ReadFile(filepath.Join(dir, "qemu.log"))
			t.Fatalf("guest never became ready; qemu said:\n%s\nconsole:\n%s", qlog, tail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// checkSSH runs commands in the guest over real SSH, pinning the host key
// the agent printed on the console.
func checkSSH(t *testing.T, console string, port int, user ssh.Signer, release string) {
	t.Helper()
	i := strings.Index(console, "ssh host key ")
	if i < 0 {
		t.Fatal("agent printed no SSH host key")
	}
	fp := strings.Fields(console[i+len("ssh host key "):])[0]
	cfg := &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(user)}, Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if ssh.FingerprintSHA256(key) != fp {
				return fmt.Errorf("host key %s, the console said %s", ssh.FingerprintSHA256(key), fp)
			}
			return nil
		},
	}
	var c *ssh.Client
	var err error
	for try := 0; try < 30; try++ {
		if c, err = ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("ssh into the guest: %v", err)
	}
	defer c.Close()
	run := func(cmd string) (string, int) {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.CombinedOutput(cmd)
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitStatus()
		}
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return string(out), 0
	}
	if out, code := run("uname -r"); code != 0 || strings.TrimSpace(out) != release {
		t.Errorf("uname -r over ssh: %q, exit %d; want %s", out, code, release)
	}
	if _, code := run("sh -c 'exit 7'"); code != 7 {
		t.Errorf("exit code over ssh: %d, want 7", code)
	}
	if out, code := run("echo persisted > /root/note && cat /root/note && hostname"); code != 0 || !strings.Contains(out, "persisted") || !strings.Contains(out, "banger") {
		t.Errorf("write in the guest: %q, exit %d", out, code)
	}
}
