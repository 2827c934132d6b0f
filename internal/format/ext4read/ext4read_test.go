package ext4read

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// mkfs makes a 64 MiB ext4 image of dir with extra mkfs options.
func mkfs(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	return testkit.Mkfs(t, dir, "64M", extra...)
}

// tree makes a work tree with what a guest's /work holds.
func tree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "src/deep/er"), 0o755))
	must(os.WriteFile(filepath.Join(d, "src/main.go"), []byte("package main\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "src/deep/er/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	big := make([]byte, 3<<20+123)
	rand.Read(big)
	must(os.WriteFile(filepath.Join(d, "big.bin"), big, 0o600))
	must(os.Symlink("src/main.go", filepath.Join(d, "fast-link")))
	must(os.Symlink(strings.Repeat("long/", 30)+"target", filepath.Join(d, "slow-link")))
	must(os.Link(filepath.Join(d, "src/main.go"), filepath.Join(d, "hard")))
	f, err := os.Create(filepath.Join(d, "sparse"))
	must(err)
	must(f.Truncate(20 << 20))
	_, err = f.WriteAt([]byte("middle"), 10<<20)
	must(err)
	must(f.Close())
	// Enough names for a hashed directory of several blocks.
	must(os.Mkdir(filepath.Join(d, "many"), 0o755))
	for i := range 600 {
		must(os.WriteFile(filepath.Join(d, "many", fmt.Sprintf("file-with-a-longish-name-%04d", i)), []byte{byte(i)}, 0o644))
	}
	return d
}

func read(t *testing.T, img string, o Options) (map[string]*tar.Header, map[string][]byte, Skipped, error) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	fs, err := Open(f, fi.Size())
	if err != nil {
		return nil, nil, Skipped{}, err
	}
	var buf bytes.Buffer
	sk, err := fs.WriteTar(&buf, o)
	if err != nil {
		return nil, nil, sk, err
	}
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the tar written does not read back: %v", err)
		}
		hdrs[h.Name] = h
		data[h.Name], _ = io.ReadAll(tr)
	}
	return hdrs, data, sk, nil
}

var roomy = Limits{Entries: 100000, Bytes: 1 << 30}

func TestReadsWhatMkfsWrote(t *testing.T) {
	src := tree(t)
	for _, c := range []struct {
		name  string
		extra []string
	}{
		{"ext4", nil},
		{"1k blocks, no metadata checksums", []string{"-b", "1024", "-O", "^metadata_csum"}},
		{"block maps (ext2 layout)", []string{"-O", "^extent,^flex_bg,^64bit,^has_journal"}},
		{"32-bit", []string{"-O", "^64bit"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := mkfs(t, src, c.extra...)
			hdrs, data, _, err := read(t, img, Options{Limits: roomy})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := hdrs["lost+found/"]; ok {
				t.Error("a work tree's tar has lost+found")
			}
			if len(hdrs) != 600+11 {
				t.Errorf("%d entries, want 611", len(hdrs))
			}
			for _, rel := range []string{"src/main.go", "src/deep/er/run.sh", "big.bin", "sparse", "hard", "many/file-with-a-longish-name-0599"} {
				want, _ := os.ReadFile(filepath.Join(src, rel))
				if !bytes.Equal(data[rel], want) {
					t.Errorf("%s: %d bytes read back, want the %d bytes written", rel, len(data[rel]), len(want))
				}
				fi, _ := os.Lstat(filepath.Join(src, rel))
				if h := hdrs[rel]; h == nil || h.Mode != int64(fi.Mode().Perm()) || h.Uid != 0 {
					t.Errorf("%s: header %+v, want mode %o owned by root", rel, h, fi.Mode().Perm())
				}
			}
			for link, want := range map[string]string{"fast-link": "src/main.go", "slow-link": strings.Repeat("long/", 30) + "target"} {
				if h := hdrs[link]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != want {
					t.Errorf("%s: %+v, want a link to %s", link, h, want)
				}
			}
			if h := hdrs["src/deep/"]; h == nil || h.Typeflag != tar.TypeDir {
				t.Errorf("src/deep/: %+v", h)
			}
		})
	}
}

func TestRootTreeKeepsOwnersLinksAndSkips(t *testing.T) {
	src := tree(t)
	img := mkfs(t, src, "-E", "root_owner=0:0")
	hdrs, _, _, err := read(t, img, Options{Limits: roomy, Root: true, Skip: []string{"src/dee?", "nothing/*"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := hdrs["lost+found/"]; !ok {
		t.Error("a root tree leaves out lost+found")
	}
	if _, ok := hdrs["src/deep/"]; ok {
		t.Error("a skipped directory is in the tar")
	}
	if _, ok := hdrs["src/deep/er/run.sh"]; ok {
		t.Error("what is below a skipped directory is in the tar")
	}
	a, b := hdrs["src/main.go"], hdrs["hard"]
	if a == nil || b == nil || (a.Typeflag != tar.TypeLink && b.Typeflag != tar.TypeLink) {
		t.Errorf("hard links: %+v and %+v, want one a link to the other", a, b)
	}
}

func TestLimits(t *testing.T) {
	img := mkfs(t, tree(t))
	for _, c := range []struct {
		name string
		l    Limits
		want string
	}{
		{"entries", Limits{Entries: 100, Bytes: 1 << 30}, "more than 100 entries (max_pull_entries)"},
		{"bytes", Limits{Entries: 100000, Bytes: 4 << 20}, "would bring what is read past 4194304 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := read(t, img, Options{Limits: c.l})
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrLimit saying %q", err, c.want)
			}
		})
	}
}

// damage rewrites the image's bytes: the first occurrence of from, which
// must be found, becomes to (the same length).
func damage(t *testing.T, img, from string, to []byte) int64 {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(from))
	if i < 0 {
		t.Fatalf("%q is not in the image", from)
	}
	copy(b[i:], to)
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return int64(i)
}

// The attacks a guest can make on its own disk, raw: each is refused with
// a short error that names the rule, and nothing of the attack's bytes
// becomes a path.
func TestHostileDisks(t *testing.T) {
	src := t.TempDir()
	name := "escape-me-" + strings.Repeat("x", 40)
	os.WriteFile(filepath.Join(src, name), []byte("payload"), 0o644)
	os.Mkdir(filepath.Join(src, "dirblock"), 0o755)
	os.WriteFile(filepath.Join(src, "dirblock", "victim-entry-name"), nil, 0o644)

	for _, c := range []struct {
		name   string
		attack func(img string)
		want   string
	}{
		{"dot-dot name", func(img string) {
			to := "../../../../../tmp/X"
			damage(t, img, name, []byte(to+strings.Repeat("/", len(name)-len(to))))
		}, `names may not hold a "/"`},
		{"dot-dot itself", func(img string) {
			// A name of two dots that is not the directory's own "..": the
			// entry's name length (two bytes before its name) made 2.
			off := damage(t, img, "victim-entry-name", []byte(".."))
			b, _ := os.ReadFile(img)
			b[off-2] = 2
			os.WriteFile(img, b, 0o600)
		}, `names may not be "." or ".."`},
		{"random directory block", func(img string) {
			off := damage(t, img, "victim-entry-name", []byte("victim-entry-name"))
			junk := make([]byte, 4096)
			rand.Read(junk)
			b, _ := os.ReadFile(img)
			copy(b[off&^4095:], junk)
			os.WriteFile(img, b, 0o600)
		}, "directory"},
		{"bad magic", func(img string) {
			b, _ := os.ReadFile(img)
			b[1024+0x38] = 0
			os.WriteFile(img, b, 0o600)
		}, "bad magic"},
		{"unknown feature", func(img string) {
			b, _ := os.ReadFile(img)
			b[1024+0x60+1] |= 0x80 // inline_data
			os.WriteFile(img, b, 0o600)
		}, "feature inline_data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := mkfs(t, src, "-O", "^metadata_csum")
			c.attack(img)
			hdrs, _, _, err := read(t, img, Options{Limits: roomy})
			if err == nil {
				t.Fatalf("read the damaged disk without an error: %v", keys(hdrs))
			}
			if !strings.Contains(err.Error(), c.want) || len(err.Error()) > 300 {
				t.Fatalf("err = %q (%d chars), want under 300 chars naming %q", err, len(err.Error()), c.want)
			}
		})
	}
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A directory that is its own child is a loop, not an endless tar.
func TestDirectoryLoop(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a", "loopme"), 0o755)
	img := mkfs(t, src, "-O", "^metadata_csum")
	// Point a/loopme's entry at a's own inode: find a's inode first.
	f, _ := os.Open(img)
	fi, _ := f.Stat()
	fs, err := Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	root, _ := fs.Inode(RootIno)
	ents, _ := fs.ReadDir(root, 100)
	var aIno uint32
	for _, e := range ents {
		if e.Name == "a" {
			aIno = e.Ino
		}
	}
	f.Close()
	b, _ := os.ReadFile(img)
	i := bytes.Index(b, []byte("loopme"))
	// The entry's inode number sits 8 bytes before its name.
	b[i-8], b[i-7], b[i-6], b[i-5] = byte(aIno), byte(aIno>>8), byte(aIno>>16), byte(aIno>>24)
	os.WriteFile(img, b, 0o600)
	_, _, _, err = read(t, img, Options{Limits: roomy})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "a loop") {
		t.Fatalf("err = %v, want a loop refused", err)
	}
}
