//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/api"
)

// TestImagePromote makes an image of a VM in which a program was
// installed: VMs of the new image run it, each with a host key of its
// own, and the image's disk carries none of the VM's identity.
func TestImagePromote(t *testing.T) {
	t.Parallel()
	e, ref := vmEnv(t)
	// A stand-in for a package: the busybox image has no package manager.
	install := `busybox mkdir -p /usr/local/bin && printf '#!/bin/sh\necho hello from the promoted image\n' > /usr/local/bin/hello && busybox chmod 755 /usr/local/bin/hello`
	e.mustBanger("vm", "run", "--name", "base", "--image", ref, "--", "sh", "-c", install)
	baseKey := e.vm("base").HostKey
	if baseKey == "" {
		t.Fatal("the running VM has no pinned host key")
	}
	if _, errOut, code := e.banger("image", "promote", "base", "promoted"); code == 0 || !strings.Contains(errOut, "stop it first") {
		t.Fatalf("promote of a running VM: exit %d, %s", code, errOut)
	}
	e.mustBanger("vm", "stop", "base")
	_, errOut, code := e.banger("image", "promote", "base", "promoted")
	if code != 0 {
		t.Fatalf("image promote: exit %d\n%s", code, errOut)
	}
	for _, stage := range []string{"flattening vm base's root disk", "reading vm base's files in a sandbox, without its identity", "checking the root file system", "publishing image promoted"} {
		if !strings.Contains(errOut, stage) {
			t.Errorf("progress lacks %q:\n%s", stage, errOut)
		}
	}
	im := findImage(t, listImages(t, e), "promoted")
	if im.SourceKind != api.SourcePromote || !strings.Contains(im.Source, "vm base") || im.Kernel != "test-deb" {
		t.Errorf("promoted image: %+v", im)
	}
	fsck(t, im.Disk)
	for _, f := range []string{"/.banger/ssh_host_ed25519_key", "/.banger/ssh_host_ed25519_key.pub"} {
		if out := debugfs(t, im.Disk, "stat "+f); strings.Contains(out, "Inode:") {
			t.Errorf("the VM's %s is in the image:\n%s", f, out)
		}
	}
	if out := debugfs(t, im.Disk, "cat /usr/local/bin/hello"); !strings.Contains(out, "hello from the promoted image") {
		t.Errorf("the installed program is not in the image: %q", out)
	}

	if out := e.mustBanger("vm", "run", "--name", "child", "--image", "promoted", "--", "/usr/local/bin/hello"); strings.TrimSpace(out) != "hello from the promoted image" {
		t.Errorf("a VM of the promoted image ran hello: %q", out)
	}
	if k := e.vm("child").HostKey; k == "" || k == baseKey {
		t.Errorf("the new VM's host key %q, the promoted VM's %q: want a key of its own", k, baseKey)
	}
	// The promoted VM is left as it was, and boots with its own key.
	e.mustBanger("vm", "start", "base")
	if k := e.vm("base").HostKey; k != baseKey {
		t.Errorf("vm base's host key changed with the promote: %q, was %q", k, baseKey)
	}

	if _, errOut, code := e.banger("image", "promote", "base", "promoted"); code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("promote onto an existing image: exit %d, %s", code, errOut)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Errorf("staging left: %v", left)
	}
	if _, errOut, code := e.banger("image", "rm", "promoted"); code == 0 || !strings.Contains(errOut, "child") {
		t.Errorf("rm of an image a VM uses: exit %d, %s", code, errOut)
	}
}
