package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banger-dev/banger/internal/format/sparse"

	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestPutAndPath(t *testing.T) {
	s := &Store{Dir: t.TempDir(), MaxBytes: 1 << 20}
	ctx := context.Background()
	f, err := s.Put(ctx, strings.NewReader("kernel bytes"), File)
	if err != nil || f.Bytes != 12 || !strings.HasPrefix(f.Digest, "sha256:") {
		t.Fatalf("put file: %+v, %v", f, err)
	}
	p, err := s.Path(ctx, f.ID, File)
	if b, _ := os.ReadFile(p); err != nil || string(b) != "kernel bytes" {
		t.Fatalf("path: %q, %v", b, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("upload mode %v, want 0600", st.Mode())
	}
	tree := testkit.Tar(t, []testkit.TarSpec{{Name: "6.1.0/", Type: tar.TypeDir, Mode: 0o755}, {Name: "6.1.0/modules.dep", Body: "x"}})
	tr, err := s.Put(ctx, bytes.NewReader(tree), Tree)
	if err != nil {
		t.Fatalf("put tree: %v", err)
	}
	tp, err := s.Path(ctx, tr.ID, Tree)
	if b, _ := os.ReadFile(filepath.Join(tp, "6.1.0/modules.dep")); err != nil || string(b) != "x" {
		t.Fatalf("tree: %q, %v", b, err)
	}

	for _, tt := range []struct {
		id, kind, want string
	}{
		{"/etc/shadow", File, "not an upload id"},
		{"../../etc/shadow", File, "not an upload id"},
		{strings.ToUpper(f.ID), File, "not an upload id"},
		{strings.Repeat("0", 32), File, "does not exist"},
		{f.ID, Tree, "is not a tree"},
		{tr.ID, File, "is not a file"},
	} {
		if _, err := s.Path(ctx, tt.id, tt.kind); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Path(%q, %s): %v, want %q", tt.id, tt.kind, err, tt.want)
		}
	}
	// Another user who learned an upload's ID cannot have it used.
	other := peer.AsUID(ctx, 1001)
	if _, err := s.Path(other, f.ID, File); errdefs.Code(err) != "not_found" {
		t.Errorf("another user's Path: %v", err)
	}
	s.Remove(f.ID)
	s.Remove(tr.ID)
	if es, _ := os.ReadDir(s.Dir); len(es) != 0 {
		t.Errorf("left after Remove: %v", es)
	}
}

func TestPutRefusesAndLeavesNothing(t *testing.T) {
	s := &Store{Dir: t.TempDir(), MaxBytes: 100}
	ctx := context.Background()
	for _, tt := range []struct {
		name, kind string
		body       []byte
		want       string
	}{
		{"too big", File, bytes.Repeat([]byte("x"), 101), "larger than"},
		{"bad kind", "dir", []byte("x"), "upload kind"},
		{"escaping tree", Tree, testkit.Tar(t, []testkit.TarSpec{{Name: "../escape", Body: "x"}}), "leaves the archive root"},
		{"tree too big", Tree, testkit.Tar(t, []testkit.TarSpec{{Name: "big", Body: strings.Repeat("x", 200)}}), ""},
		{"not a tar", Tree, []byte(strings.Repeat("garbage", 10)), "read tar"},
	} {
		_, err := s.Put(ctx, bytes.NewReader(tt.body), tt.kind)
		if err == nil || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an invalid error with %q", tt.name, err, tt.want)
		}
	}
	if es, _ := os.ReadDir(s.Dir); len(es) != 0 {
		t.Errorf("refused uploads left %v", es)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Dir), "escape")); err == nil {
		t.Error("a tree entry escaped its root")
	}
}

func TestRecoverDropsEverything(t *testing.T) {
	s := &Store{Dir: t.TempDir(), MaxBytes: 1 << 20}
	s.Put(context.Background(), strings.NewReader("x"), File)
	os.WriteFile(filepath.Join(s.Dir, "kernel-keep"), nil, 0o600)
	s.Recover()
	es, _ := os.ReadDir(s.Dir)
	if len(es) != 1 || es[0].Name() != "kernel-keep" {
		t.Fatalf("after Recover: %v", es)
	}
}

// TestSparseRoundTrip: a disk image's holes cross as nothing and come
// back as holes; the data is intact.
func TestSparseRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "disk")
	f, _ := os.Create(src)
	f.Truncate(64 << 20)
	f.WriteAt([]byte("superblock"), 1024)
	f.WriteAt(bytes.Repeat([]byte("d"), 8192), 32<<20)
	f.Close()
	f, _ = os.Open(src)
	defer f.Close()
	exts, err := sparse.DataExtents(f, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	if err := sparse.Write(&body, f, exts, 64<<20); err != nil {
		t.Fatal(err)
	}
	if body.Len() > 1<<20 {
		t.Errorf("a 64 MiB file of 12 KiB of data took %d bytes to send", body.Len())
	}
	s := &Store{Dir: t.TempDir(), MaxBytes: 1 << 20}
	u, err := s.Put(context.Background(), &body, Sparse)
	if err != nil || u.Kind != File || u.Bytes != 64<<20 {
		t.Fatalf("put sparse: %+v, %v", u, err)
	}
	p, _ := s.Path(context.Background(), u.ID, File)
	got, _ := os.ReadFile(p)
	want, _ := os.ReadFile(src)
	if !bytes.Equal(got, want) {
		t.Fatal("the file came back different")
	}
	var st syscall.Stat_t
	syscall.Stat(p, &st)
	if st.Blocks*512 > 4<<20 {
		t.Errorf("the upload takes %d bytes on disk: its holes were filled", st.Blocks*512)
	}
	for _, bad := range [][]byte{
		{0, 0, 0, 0, 0, 0, 0, 1}, // cut short
		append(append(make([]byte, 8), 0, 0, 0, 0, 0, 0, 0, 5), "ab"...),              // extent cut short
		append(append([]byte{0xff, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 7)...), 1, 'x'), // beyond the size bound
	} {
		if _, err := s.Put(context.Background(), bytes.NewReader(bad), Sparse); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("bad sparse body %x: %v", bad, err)
		}
	}
}
