//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/agent"
	"github.com/banger-dev/banger/internal/initramfs"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu"
)

// TestBootToReady boots, under qemu's software emulation, a Debian kernel
// pulled from its .deb with banger's own initramfs and an image pulled from
// the local registry with the guest agent injected, and waits for the
// agent's ready line. The VM lifecycle around it is not built yet; this
// proves the boot path it will use.
func TestBootToReady(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); .ci/run installs it")
	}
	reg := startRegistry(t)
	push(t, reg+"/test/busybox:1", image(t, gzipLayer(t, tarOf(t, busyboxLayer(t)))))
	fs := newFileServer(t)
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\nagent_path = \""+agentBin+"\"\n")
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
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
	data, _ := os.ReadFile(im.Disk)
	os.WriteFile(disk, data, 0o644)

	cfg := vmm.Config{
		Name: "boot-test", CPUs: 1, MemoryMB: 512,
		Kernel: filepath.Join(k.Dir, "vmlinux"), Initrd: initrd,
		Cmdline: "console=ttyS0 root=/dev/vda rw panic=-1",
		Disks:   []vmm.Disk{{ID: "root", Path: disk, Format: "raw"}},
		Console: filepath.Join(dir, "console.log"), Control: filepath.Join(dir, "qmp.sock"),
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
			return
		}
		if ctx.Err() != nil {
			tail := string(b)
			if len(tail) > 3000 {
				tail = tail[len(tail)-3000:]
			}
			t.Fatalf("guest never became ready; console:\n%s", tail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
