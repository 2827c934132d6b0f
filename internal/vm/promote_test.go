package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/errdefs"
	"github.com/banger-dev/banger/internal/operation"
	"github.com/banger-dev/banger/internal/runner"
	"github.com/banger-dev/banger/internal/testkit"
)

func TestPromote(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	var adopted []api.Image
	rec := &runner.Recorder{}
	s.d.Images = fakeImages{disk: s.d.Images.(fakeImages).disk, adopted: &adopted}
	s.d.Runner = rec
	ctx := context.Background()
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "base", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  api.ImagePromoteRequest
		code string
		want string
	}{
		{"running", api.ImagePromoteRequest{Name: "new", VM: "base"}, "conflict", "stop it first"},
		{"no such vm", api.ImagePromoteRequest{Name: "new", VM: "nope"}, "not_found", "nope"},
		{"image exists", api.ImagePromoteRequest{Name: "img", VM: "base"}, "conflict", "already exists"},
		{"bad image name", api.ImagePromoteRequest{Name: "../x", VM: "base"}, "invalid", "not valid"},
	} {
		if _, err := s.Promote(ctx, tt.req, operation.Discard); errdefs.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v (%s), want %s with %q", tt.name, err, errdefs.Code(err), tt.code, tt.want)
		}
	}
	if len(adopted) != 0 || len(rec.Calls()) != 0 || len(d.flattened) != 0 {
		t.Fatalf("refused promotes did work: %v %v %v", adopted, rec.Calls(), d.flattened)
	}
	if _, err := s.Stop(ctx, "base", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	im, err := s.Promote(ctx, api.ImagePromoteRequest{Name: "new", VM: "base"}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if im.Name != "new" || im.Kernel != "k" || !strings.Contains(im.Source, "vm base") || len(adopted) != 1 {
		t.Errorf("promoted %+v (adopted %v)", im, adopted)
	}
	if len(d.flattened) != 1 || filepath.Base(d.flattened[0]) != rootRaw {
		t.Fatalf("the root disk was not flattened: %v", d.flattened)
	}
}

// removeIdentity against a real ext4 file system: identity files go,
// everything else stays, and e2fsck finds it clean.
func TestRemoveIdentity(t *testing.T) {
	testkit.NeedTools(t, "e2fsprogs", "mkfs.ext4", "debugfs", "e2fsck")
	tree := t.TempDir()
	files := map[string]string{
		".banger/ssh_host_ed25519_key":     "private",
		".banger/ssh_host_ed25519_key.pub": "public",
		".banger/init":                     "agent",
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef",
		"etc/ssh/ssh_host_rsa_key":         "rsa",
		"etc/ssh/sshd_config":              "Port 22",
		"usr/local/bin/hello":              "#!/bin/sh\necho hello\n",
	}
	for p, body := range files {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte(body), 0o600)
	}
	disk := filepath.Join(t.TempDir(), "root.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", tree, disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	ctx := context.Background()
	r := runner.Exec{}
	if err := removeIdentity(ctx, r, disk); err != nil {
		t.Fatal(err)
	}
	gone := []string{"/.banger/ssh_host_ed25519_key", "/.banger/ssh_host_ed25519_key.pub", "/etc/machine-id", "/etc/ssh/ssh_host_rsa_key"}
	for p := range files {
		want := !slices.Contains(gone, "/"+p)
		if got := exists(ctx, r, disk, "/"+p); got != want {
			t.Errorf("%s there: %v, want %v", p, got, want)
		}
	}
	if out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn after removing identity: %v\n%s", err, out)
	}
	// Nothing left to remove: a second run is a no-op.
	if err := removeIdentity(ctx, r, disk); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(disk)); len(entries) != 1 {
		t.Errorf("left beside the disk: %v", entries)
	}
}
