package workspace

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/format/guestdisk"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/sandbox"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func needE2fsprogs(t *testing.T) {
	t.Helper()
	testkit.NeedTools(t, "e2fsprogs", "debugfs", "resize2fs", "tune2fs", "e2fsck")
}

type entry = testkit.TarSpec

func tarball(t *testing.T, ents []entry) []byte { return testkit.Tar(t, ents) }

func newService(t *testing.T, limit int64) *Service {
	staging := filepath.Join(t.TempDir(), "staging")
	os.MkdirAll(staging, 0o700)
	return New(Deps{Runner: runner.Exec{}, Staging: staging, MaxSeedBytes: limit, DiskBytes: 64 << 20,
		Disks:        guestdisk.Reader{Sandbox: sandbox.Spec{UID: 65534, GID: 65534, Memory: 2 << 30, Timeout: time.Minute}},
		MaxPullBytes: 1 << 30, MaxPullEntries: 1000})
}

// TestMain makes the test binary the sandboxed disk reader, as the banger
// binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == sandbox.Arg && os.Args[2] == guestdisk.Entry {
		os.Exit(guestdisk.Main(os.Args[3:]))
	}
	os.Exit(m.Run())
}

var goodSeed = []entry{
	{Name: "src/", Type: tar.TypeDir, Mode: 0o755},
	{Name: "src/main.go", Body: "package main\n"},
	{Name: "run.sh", Body: "#!/bin/sh\n", Mode: 0o755},
	{Name: "link", Link: "../outside", Type: tar.TypeSymlink},
}

// A staged seed becomes a disk with room to work, and reads back (from
// the disk, as for a stopped VM) as the same files, modes and links.
func TestStageClaimExport(t *testing.T) {
	needE2fsprogs(t)
	s := newService(t, 1<<20)
	alice := peer.AsUID(context.Background(), 1000)
	seed, err := s.Stage(alice, bytes.NewReader(tarball(t, goodSeed)), api.Work{Source: "/home/u/repo", Base: "abcdef12"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Another user who learned the seed's ID neither claims nor drops it.
	bob := peer.AsUID(context.Background(), 1001)
	if _, err := s.Claim(bob, seed.ID, t.TempDir()); errdefs.Code(err) != "not_found" {
		t.Fatalf("another user's claim: %v", err)
	}
	s.Discard(bob, seed.ID)
	if seed.Work.Files != 3 || seed.Work.Bytes != int64(len("package main\n")+len("#!/bin/sh\n")) || !strings.HasPrefix(seed.Work.Fingerprint, "sha256:") {
		t.Errorf("seed = %+v", seed.Work)
	}
	vmDir := t.TempDir()
	w, err := s.Claim(alice, seed.ID, vmDir)
	if err != nil {
		t.Fatal(err)
	}
	if w.Fingerprint != seed.Work.Fingerprint || w.DiskBytes < 64<<20 {
		t.Errorf("claimed %+v", w)
	}
	disk := filepath.Join(vmDir, DiskName)
	// The disk must take writes: free blocks and inodes beyond the seed.
	out, err := exec.Command("dumpe2fs", "-h", disk).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"Free blocks:", "Free inodes:"} {
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, field); ok {
				if n, _ := strconv.Atoi(strings.TrimSpace(v)); n < 4000 {
					t.Errorf("work disk has little room: %s", l)
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := s.ExportDisk(context.Background(), disk, &buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, e := range testkit.ReadTar(t, &buf) {
		h := e.Header
		got[name] = string(h.Typeflag) + " " + os.FileMode(h.Mode).Perm().String() + " " + h.Linkname + e.Body
	}
	want := map[string]string{
		"src/":        "5 -rwxr-xr-x ",
		"src/main.go": "0 -rw-r--r-- package main\n",
		"run.sh":      "0 -rwxr-xr-x #!/bin/sh\n",
		"link":        "2 -rwxrwxrwx ../outside",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("exported %s = %q, want %q (all: %q)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("exported %d entries, want %d (the spare inodes must be gone): %q", len(got), len(want), got)
	}
	if _, err := s.Claim(alice, seed.ID, vmDir); errdefs.Code(err) != "not_found" {
		t.Errorf("second claim: %v", err)
	}
	if left, _ := os.ReadDir(s.d.Staging); len(left) != 0 {
		t.Errorf("staging not empty: %v", left)
	}
}

// Bad seeds are refused, and nothing is left staged.
func TestStageRefuses(t *testing.T) {
	needE2fsprogs(t)
	for _, tc := range []struct {
		name  string
		body  []byte
		limit int64
		meta  api.Work
		want  string
	}{
		{"too large", tarball(t, []entry{{Name: "big", Body: strings.Repeat("x", 3000)}}), 2048, api.Work{}, "max_seed_bytes"},
		{"escaping path", tarball(t, []entry{{Name: "../evil", Body: "x"}}), 1 << 20, api.Work{}, "leaves the archive root"},
		{"absolute path", tarball(t, []entry{{Name: "/etc/passwd", Body: "x"}}), 1 << 20, api.Work{}, "absolute"},
		{"device", tarball(t, []entry{{Name: "dev", Type: tar.TypeChar}}), 1 << 20, api.Work{}, "files, directories and links only"},
		{"not tar", bytes.Repeat([]byte("garbage!"), 200), 1 << 20, api.Work{}, "work"},
		{"reserved name", tarball(t, []entry{{Name: ext4.SpareDir + "/0", Body: "x"}}), 1 << 20, api.Work{}, "keeps for itself"},
		{"bad base", tarball(t, goodSeed), 1 << 20, api.Work{Base: "HEAD; rm -rf /"}, "not a commit id"},
		{"truncated", tarball(t, goodSeed)[:700], 1 << 20, api.Work{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, tc.limit)
			_, err := s.Stage(context.Background(), bytes.NewReader(tc.body), tc.meta, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) && tc.want != "work" && tc.want != "" {
				t.Errorf("err %v is not invalid input", err)
			}
			if left, _ := os.ReadDir(s.d.Staging); len(left) != 0 {
				t.Errorf("staging not empty: %v", left)
			}
		})
	}
}
