package tarx

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
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

// A refusal quotes at most a bounded part of the hostile name, and says
// which rule the name broke.
func TestRefusalsAreBoundedAndSayTheRule(t *testing.T) {
	long := strings.Repeat("a", 5000)
	tests := []struct {
		name string
		ent  ent
		rule string
	}{
		{"5000-byte name", ent{name: long, body: "x", typ: tar.TypeReg}, "names are at most 4096 bytes"},
		{"5000-byte name with slashes", ent{name: strings.Repeat("a/", 2500), typ: tar.TypeDir}, "names are at most 4096 bytes"},
		{"300-byte part", ent{name: "d/" + strings.Repeat("p", 300), body: "x", typ: tar.TypeReg}, "each part of a name is at most 255 bytes"},
		{"dotdot", ent{name: "a/../../" + long[:3000], body: "x", typ: tar.TypeReg}, "leaves the archive root"},
		{"absolute", ent{name: "/" + long[:3000], body: "x", typ: tar.TypeReg}, "names are relative to the archive root"},
		{"hard link escaping by an absolute target", ent{name: "hl", link: "/etc/" + long[:3000], typ: tar.TypeLink}, "names are relative to the archive root"},
		{"hard link escaping by dotdot", ent{name: "hl", link: "../../" + long[:3000], typ: tar.TypeLink}, "leaves the archive root"},
		{"long symlink target", ent{name: "sl", link: long, typ: tar.TypeSymlink}, "link targets are at most 4095 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := extractAll(t, t.TempDir(), 0, []ent{tt.ent})
			checkRefusal(t, err, tt.rule)
		})
	}
	// No tar stream carries a NUL in a name (archive/tar refuses to
	// write one), so Clean and CheckSymlink are asked directly.
	_, err := Clean("a\x00b")
	checkRefusal(t, err, "names may not hold a NUL byte")
	_, err = CleanTarget("")
	checkRefusal(t, err, "names may not be empty")
	checkRefusal(t, CheckSymlink("/etc\x00"+long[:3000]), "link targets may not hold a NUL byte")
	checkRefusal(t, CheckSymlink(""), "a symlink must point somewhere")
}

func checkRefusal(t *testing.T, err error, rule string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("accepted; want refused: %s", rule)
	case !errors.Is(err, errdefs.ErrInvalid):
		t.Errorf("%v: not ErrInvalid", err)
	case len(err.Error()) >= 300:
		t.Errorf("a %d-character message: %.400s", len(err.Error()), err)
	case !strings.Contains(err.Error(), rule):
		t.Errorf("%v: does not say %q", err, rule)
	default:
		t.Log(err)
	}
}

// Names an honest archive may hold are kept: the longest part, a
// whiteout of a file with the longest name, the longest path (a
// directory's, sixteen of the longest parts).
func TestLongestNamesPass(t *testing.T) {
	part := strings.Repeat("p", MaxName)
	for _, name := range []string{part, ".wh." + part, strings.Repeat(part+"/", 16)} {
		if len(name) > MaxPath {
			t.Fatalf("test name of %d bytes", len(name))
		}
		if _, err := Clean(name); err != nil {
			t.Errorf("Clean(%d bytes): %v", len(name), err)
		}
	}
	if err := CheckSymlink(strings.Repeat("t", MaxLinkTarget)); err != nil {
		t.Errorf("the longest symlink target: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, tt := range []struct {
		name, rule string
	}{
		{"ok", ""},
		{".hidden", ""},
		{"..x", ""},
		{strings.Repeat("n", 255), ""},
		{"", "may not be empty"},
		{".", `may not be "." or ".."`},
		{"..", `may not be "." or ".."`},
		{"../x", `may not hold a "/"`},
		{"a/b", `may not hold a "/"`},
		{"/", `may not hold a "/"`},
		{"a\x00b", "NUL"},
		{strings.Repeat("n", 256), "at most 255 bytes"},
		{strings.Repeat("n", 5000), "at most 255 bytes"},
	} {
		err := CheckName(tt.name)
		switch {
		case tt.rule == "" && err != nil:
			t.Errorf("checkName(%.20q): %v", tt.name, err)
		case tt.rule != "" && (err == nil || !strings.Contains(err.Error(), tt.rule) || len(err.Error()) >= 300):
			t.Errorf("checkName(%.20q) = %v, want an error saying %q", tt.name, err, tt.rule)
		}
	}
}
