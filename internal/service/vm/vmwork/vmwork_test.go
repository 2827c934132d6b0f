package vmwork

import (
	"bytes"
	"context"
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
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
)

// flattener is a VMM driver whose Flatten copies one file: the guest's
// disk as the test made it.
type flattener struct {
	vmm.Driver
	from string
}

func (f flattener) Flatten(_ context.Context, _ vmm.Disk, dst string) error {
	b, err := os.ReadFile(f.from)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
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
	s := New(Deps{
		Driver:            flattener{from: guest},
		Runner:            runner.Exec{},
		GuestDisks:        guestdisk.Reader{Sandbox: sandbox.Spec{UID: 65534, GID: 65534, Memory: 2 << 30, Timeout: time.Minute}},
		MaxPromoteEntries: 1000,
		DiskBytes:         64 << 20,
	})
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

func TestCheckAuthSync(t *testing.T) {
	big := make([]byte, maxLentBytes+1)
	many := make([]api.LentFile, maxLentFiles+1)
	for i := range many {
		many[i] = api.LentFile{Path: "f"}
	}
	for _, tc := range []struct {
		name string
		req  api.AuthSync
		want string
	}{
		{"good", api.AuthSync{Files: []api.LentFile{{Path: ".gitconfig", Data: []byte("x")}}, Env: map[string]string{"GH_TOKEN": "t"}}, ""},
		{"absolute", api.AuthSync{Files: []api.LentFile{{Path: "/etc/shadow"}}}, "inside the home"},
		{"escape", api.AuthSync{Files: []api.LentFile{{Path: "../../etc/shadow"}}}, "inside the home"},
		{"bad variable", api.AuthSync{Env: map[string]string{"A=B": "x"}}, "not a variable name"},
		{"too big", api.AuthSync{Files: []api.LentFile{{Path: "f", Data: big}}}, "at most"},
		{"too many", api.AuthSync{Files: many}, "at most"},
	} {
		err := CheckAuthSync(tc.req)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
