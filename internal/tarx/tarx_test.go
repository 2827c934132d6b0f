package tarx

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/banger-dev/banger/internal/errdefs"
)

type ent struct {
	name, link, body string
	typ              byte
}

func extractAll(t *testing.T, root string, limit int64, ents []ent) error {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	x := &Extractor{Root: root, Limit: limit}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := Clean(h.Name)
		if err != nil {
			return err
		}
		if err := x.Entry(rel, h, tr); err != nil {
			return err
		}
	}
}

func TestExtractGood(t *testing.T) {
	root := t.TempDir()
	err := extractAll(t, root, 0, []ent{
		{name: "./a/", typ: tar.TypeDir},
		{name: "./a/f", body: "hello", typ: tar.TypeReg},
		{name: "./a/hl", link: "a/f", typ: tar.TypeLink},
		{name: "./a/abs-link", link: "/usr/src/linux-headers", typ: tar.TypeSymlink},
		{name: "b/c/deep", body: "x", typ: tar.TypeReg},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a/hl")); string(b) != "hello" {
		t.Fatalf("hard link content %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(root, "a/abs-link")); l != "/usr/src/linux-headers" {
		t.Fatalf("symlink = %q", l)
	}
}

func TestExtractHostile(t *testing.T) {
	tests := []struct {
		name string
		ents []ent
	}{
		{"dotdot", []ent{{name: "../evil", body: "x", typ: tar.TypeReg}}},
		{"nested dotdot", []ent{{name: "a/../../evil", body: "x", typ: tar.TypeReg}}},
		{"absolute", []ent{{name: "/etc/evil", body: "x", typ: tar.TypeReg}}},
		{"through symlink", []ent{
			{name: "link", link: "OUTSIDE", typ: tar.TypeSymlink},
			{name: "link/evil", body: "x", typ: tar.TypeReg},
		}},
		{"hardlink outside", []ent{{name: "hl", link: "../../etc/passwd", typ: tar.TypeLink}}},
		{"hardlink absolute", []ent{{name: "hl", link: "/etc/passwd", typ: tar.TypeLink}}},
		{"hardlink through symlink", []ent{
			{name: "link", link: "OUTSIDE", typ: tar.TypeSymlink},
			{name: "hl", link: "link/secret", typ: tar.TypeLink},
		}},
		{"over limit", []ent{{name: "big", body: string(make([]byte, 2000)), typ: tar.TypeReg}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "OUTSIDE")
			os.Mkdir(outside, 0o755)
			os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644)
			root := filepath.Join(parent, "root")
			os.Mkdir(root, 0o755)
			// Symlinks in the tests point at the sibling OUTSIDE directory.
			for i := range tt.ents {
				if tt.ents[i].link == "OUTSIDE" {
					tt.ents[i].link = outside
				}
			}
			err := extractAll(t, root, 1000, tt.ents)
			if err == nil {
				t.Fatal("hostile archive extracted without error")
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("file written outside the root")
			}
			if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
				t.Fatal("file written through a symlink")
			}
		})
	}
}

func TestTruncatedFile(t *testing.T) {
	root := t.TempDir()
	x := &Extractor{Root: root}
	h := &tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 100, Mode: 0o644}
	err := x.Entry("f", h, bytes.NewReader(make([]byte, 40)))
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("truncated entry: %v", err)
	}
}
