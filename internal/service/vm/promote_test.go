package vm

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/format/guestdisk"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/sandbox"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestPromote(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	var adopted []api.Image
	rec := &runner.Recorder{}
	s.d.Images = fakeImages{disk: s.d.Images.(fakeImages).disk, adopted: &adopted}
	s.d.Runner = rec
	s.d.GuestDisks = fakeGuestDisks{t}
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
	if len(d.flattened) != 1 || filepath.Base(d.flattened[0]) != vmdisk.RootRaw {
		t.Fatalf("the root disk was not flattened: %v", d.flattened)
	}
}

// fakeGuestDisks answers every read with one file.
type fakeGuestDisks struct{ t testing.TB }

func (f fakeGuestDisks) Tar(ctx context.Context, disk string, o ext4read.Options, w io.Writer) (ext4read.Skipped, error) {
	_, err := w.Write(testkit.Tar(f.t, []testkit.TarSpec{{Name: "etc/hostname", Body: "base\n"}}))
	return ext4read.Skipped{}, err
}

// TestMain makes the test binary the sandboxed disk reader, as the banger
// binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == sandbox.Arg && os.Args[2] == guestdisk.Entry {
		os.Exit(guestdisk.Main(os.Args[3:]))
	}
	os.Exit(m.Run())
}

// rebuild against a real ext4 file system, the real sandboxed reader and
// the real image writer: identity files are left out, everything else
// (contents, modes, owners, links) crosses, and e2fsck finds the new file
// system clean.
func TestRebuild(t *testing.T) {
	testkit.NeedTools(t, "e2fsprogs", "mkfs.ext4", "e2fsck", "resize2fs", "tune2fs")
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
	os.Chmod(filepath.Join(tree, "usr/local/bin/hello"), 0o755)
	os.Symlink("hello", filepath.Join(tree, "usr/local/bin/hi"))
	guest := testkit.Mkfs(t, tree, "32M", "-E", "root_owner=0:0")
	s := &Service{d: Deps{
		Driver:            &fakeDriver{flattenFrom: guest},
		Runner:            runner.Exec{},
		GuestDisks:        guestdisk.Reader{Sandbox: sandbox.Spec{UID: 65534, GID: 65534, Memory: 2 << 30, Timeout: time.Minute}},
		MaxPromoteEntries: 1000,
		Defaults:          Defaults{DiskBytes: 64 << 20},
	}}
	dir := t.TempDir()
	dst := filepath.Join(dir, "rootfs.ext4")
	if err := s.rebuild(context.Background(), "base", vmm.Disk{Path: guest}, dst, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", dst).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn of the new image: %v\n%s", err, out)
	}
	f, _ := os.Open(dst)
	defer f.Close()
	fi, _ := f.Stat()
	fs, err := ext4read.Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := fs.WriteTar(&buf, ext4read.Options{Limits: ext4read.Limits{Entries: 1000, Bytes: 1 << 30}, Root: true}); err != nil {
		t.Fatal(err)
	}
	got := testkit.ReadTar(t, &buf)
	gone := []string{".banger/ssh_host_ed25519_key", ".banger/ssh_host_ed25519_key.pub", "etc/machine-id", "etc/ssh/ssh_host_rsa_key"}
	for p, body := range files {
		e, there := got[p]
		if want := !slices.Contains(gone, p); there != want {
			t.Errorf("%s there: %v, want %v", p, there, want)
		} else if there && e.Body != body {
			t.Errorf("%s = %q, want %q", p, e.Body, body)
		}
	}
	if e := got["usr/local/bin/hello"]; e.Header == nil || e.Header.Mode != 0o755 {
		t.Errorf("hello's mode lost: %+v", e.Header)
	}
	if e := got["usr/local/bin/hi"]; e.Header == nil || e.Header.Linkname != "hello" {
		t.Errorf("the link lost: %+v", e.Header)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left beside the image: %v", entries)
	}
}
