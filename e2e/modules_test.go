//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestModules boots VMs of the busybox image (no kmod, no
// /lib/modules) on Debian's kernel: the kernel's modules reach the guest
// read-only, modprobe and lsmod work, modules load on demand (a mount of
// an overlay, an open of /dev/fuse), and cgroup v2 is mounted with its
// controllers delegated.
func TestGuestModules(t *testing.T) {
	t.Parallel()
	e, ref := vmEnv(t)
	out, errOut, code := e.banger("vm", "run", "--name", "m1", "--image", ref, "--", "sh", "-c",
		"modprobe overlay && modprobe fuse && lsmod; echo; cat /sys/fs/cgroup/cgroup.controllers /sys/fs/cgroup/cgroup.subtree_control; uname -r; busybox ls /lib/modules/$(uname -r)/modules.dep; busybox touch /lib/modules/$(uname -r)/x 2>&1 || echo read-only")
	if code != 0 {
		t.Fatalf("vm run: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "modules disk") {
		t.Errorf("the first start does not say it builds the kernel's modules disk:\n%s", errOut)
	}
	lsmod, rest, _ := strings.Cut(out, "\n\n")
	for _, m := range []string{"overlay", "fuse"} {
		if !strings.Contains(lsmod, "\n"+m+" ") {
			t.Errorf("lsmod after modprobe %s:\n%s", m, lsmod)
		}
	}
	lines := strings.Split(rest, "\n")
	if len(lines) < 5 {
		t.Fatalf("guest printed:\n%s", out)
	}
	for i, what := range []string{"cgroup.controllers", "cgroup.subtree_control"} {
		for _, c := range []string{"cpu", "memory", "io", "pids"} {
			if !strings.Contains(" "+lines[i]+" ", " "+c+" ") {
				t.Errorf("%s: %q lacks %s", what, lines[i], c)
			}
		}
	}
	if !strings.HasSuffix(lines[3], "/modules.dep") || lines[4] != "read-only" && !strings.Contains(rest, "Read-only") {
		t.Errorf("the modules at /lib/modules/%s: %q", lines[2], rest)
	}
	// The image itself is untouched: its disk has no modules.
	if ents, _ := filepath.Glob(filepath.Join(e.stateDir, "cache", "modules", "*.modules.ext4")); len(ents) != 1 {
		t.Errorf("modules disks in the cache: %v, want one for the kernel", ents)
	}

	// On demand, in a VM that loaded nothing by hand: the kernel asks the
	// agent for overlay when a mount needs it, and for fuse when
	// /dev/fuse is opened.
	out, errOut, code = e.banger("vm", "run", "--rm", "--image", "busybox-1", "--", "sh", "-c",
		"cd /tmp && busybox mkdir l u w m && busybox mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m && echo mounted; "+
			"busybox ls -l /dev/fuse; busybox cat /dev/fuse 2>/dev/null; busybox grep -o -w -e overlay -e fuse /proc/modules | busybox sort")
	if code != 0 || !strings.Contains(out, "mounted") || !strings.HasSuffix(out, "fuse\noverlay\n") {
		t.Errorf("modules on demand: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "cache", "modules")); err != nil {
		t.Error(err)
	}
}
