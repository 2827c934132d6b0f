package guestdisk

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/kit/sandbox"
	"github.com/banger-dev/banger/internal/kit/testkit"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == sandbox.Arg && os.Args[2] == Entry {
		os.Exit(Main(os.Args[3:]))
	}
	os.Exit(m.Run())
}

func mkfs(t *testing.T, dir string) string {
	t.Helper()
	return testkit.Mkfs(t, dir, "32M", "-O", "^metadata_csum")
}

var reader = Reader{Sandbox: sandbox.Spec{UID: 65534, GID: 65534, Memory: 2 << 30, Timeout: time.Minute}}

func TestReadsInTheSandbox(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a/b"), 0o755)
	os.WriteFile(filepath.Join(src, "a/b/f"), []byte("hello"), 0o640)
	os.Symlink("/etc/passwd", filepath.Join(src, "a/l"))
	img := mkfs(t, src)
	var buf bytes.Buffer
	if _, err := reader.Tar(context.Background(), img, ext4read.Options{Limits: ext4read.Limits{Entries: 100, Bytes: 1 << 20}}, &buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, e := range testkit.ReadTar(t, &buf) {
		got[name] = e.Body + e.Header.Linkname
	}
	want := map[string]string{"a/": "", "a/b/": "", "a/b/f": "hello", "a/l": "/etc/passwd"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// A disk whose entry names a path out of the tree: the error is short,
// says the rule, and nothing reaches w past the entries before it.
func TestHostileNameRefused(t *testing.T) {
	src := t.TempDir()
	name := "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
	os.WriteFile(filepath.Join(src, name), []byte("x"), 0o644)
	img := mkfs(t, src)
	b, _ := os.ReadFile(img)
	i := bytes.Index(b, []byte(name))
	copy(b[i:], "../../../../../../../../tmp/X/")
	os.WriteFile(img, b, 0o600)
	var buf bytes.Buffer
	_, err := reader.Tar(context.Background(), img, ext4read.Options{Limits: ext4read.Limits{Entries: 100, Bytes: 1 << 20}}, &buf)
	if err == nil || !strings.Contains(err.Error(), `names may not hold a "/"`) || len(err.Error()) > 300 {
		t.Fatalf("err = %v, want a short refusal naming the rule", err)
	}
	if bytes.Contains(buf.Bytes(), []byte("tmp/X")) {
		t.Error("the hostile name reached the output")
	}
}

// A reader that runs past its time is ended and says so.
func TestTimeoutEnds(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("y"), 1<<20), 0o644)
	img := mkfs(t, src)
	r := reader
	r.Sandbox.Timeout = time.Nanosecond
	_, err := r.Tar(context.Background(), img, ext4read.Options{Limits: ext4read.Limits{Entries: 100, Bytes: 1 << 30}}, io.Discard)
	if err == nil {
		t.Fatal("a reader past its timeout succeeded")
	}
}

// BenchmarkTarSmallDisk is the sandbox's own cost: a sandboxed reader
// started, locked down, and done with a disk of a few files, per read.
// The other way the design allows, a reader VM, costs at least a resume
// from a template (about 0.5 s under TCG here) before it reads a byte.
func BenchmarkTarSmallDisk(b *testing.B) {
	src := b.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("hello"), 0o644)
	img := testkit.Mkfs(b, src, "32M")
	o := ext4read.Options{Limits: ext4read.Limits{Entries: 100, Bytes: 1 << 20}}
	for b.Loop() {
		if _, err := reader.Tar(context.Background(), img, o, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
