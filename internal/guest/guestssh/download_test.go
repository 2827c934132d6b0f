package guestssh

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// node is what the hostile SFTP server says a path is.
type node struct {
	mode   fs.FileMode
	body   string // a file's content
	target string // a link's target
	list   []fakeInfo
}

// fakeInfo is a directory entry exactly as the server lists it: any name,
// any type.
type fakeInfo struct {
	name string
	mode fs.FileMode
	size int64
}

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return f.size }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Unix(1700000000, 0) }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// hostile is an SFTP server that answers from a table of paths, and for
// any other path with other, whatever the listings led to.
type hostile struct {
	tree  map[string]node
	other node
}

func (h *hostile) lookup(p string) node {
	if n, ok := h.tree[p]; ok {
		return n
	}
	return h.other
}

func (h *hostile) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	n := h.lookup(r.Filepath)
	switch r.Method {
	case "List":
		l := make(listerAt, len(n.list))
		for i, fi := range n.list {
			l[i] = fi
		}
		return l, nil
	case "Readlink":
		// The request server answers a readlink with the entry's name.
		return listerAt{fakeInfo{name: n.target}}, nil
	}
	return listerAt{fakeInfo{name: path.Base(r.Filepath), mode: n.mode, size: int64(len(n.body))}}, nil
}

func (h *hostile) Lstat(r *sftp.Request) (sftp.ListerAt, error) { return h.Filelist(r) }

func (h *hostile) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return strings.NewReader(h.lookup(r.Filepath).body), nil
}

func (h *hostile) Filewrite(*sftp.Request) (io.WriterAt, error) { return nil, fs.ErrPermission }
func (h *hostile) Filecmd(*sftp.Request) error                  { return fs.ErrPermission }

// hostileClient is an SFTP client of h over an in-memory pipe.
func hostileClient(t *testing.T, h *hostile) *sftp.Client {
	t.Helper()
	cc, sc := net.Pipe()
	srv := sftp.NewRequestServer(sc, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
	go srv.Serve()
	c, err := sftp.NewClientPipe(cc, cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return c
}

func dir(list ...fakeInfo) node { return node{mode: fs.ModeDir | 0o755, list: list} }
func file(name string) fakeInfo { return fakeInfo{name: name, mode: 0o644, size: 5} }
func sub(name string) fakeInfo  { return fakeInfo{name: name, mode: fs.ModeDir | 0o755} }
func link(name string) fakeInfo { return fakeInfo{name: name, mode: fs.ModeSymlink | 0o777} }

// A guest's SFTP server that lies cannot have vm cp write anywhere but
// under DST: not through a link it listed (and then listed again as a
// directory or a file), not through one an earlier copy left in DST, not
// at a name of "..", "../x", "a/b", NUL or 5,000 bytes, not by making
// the copy go down forever.
func TestDownloadFromAHostileGuest(t *testing.T) {
	pwned := node{mode: 0o644, body: "pwned"}
	long := strings.Repeat("n", 5000)
	tests := []struct {
		name string
		// tree is the guest's, under /src; OUTSIDE in a link's target is
		// the host directory beside DST that nothing may reach.
		tree  map[string]node
		other node
		// before makes what an earlier copy left in DST.
		before func(t *testing.T, dst, outside string)
		want   string // in the error; "" for a copy that succeeds
		check  func(t *testing.T, dst, outside string)
	}{
		{
			name: "a link, then a directory below it by the same name",
			tree: map[string]node{
				"/src":   dir(link("l"), sub("l")),
				"/src/l": {mode: fs.ModeSymlink | 0o777, target: "OUTSIDE", list: []fakeInfo{file("x")}},
			},
			other: pwned,
			want:  "lists \"l\" twice",
		},
		{
			name: "a directory, then a link by the same name",
			tree: map[string]node{
				"/src":   dir(sub("l"), link("l")),
				"/src/l": {mode: fs.ModeDir | 0o755, target: "OUTSIDE", list: []fakeInfo{file("x")}},
			},
			other: pwned,
			want:  "lists \"l\" twice",
		},
		{
			name: "a link to a host file, then a file by the same name",
			tree: map[string]node{
				"/src":   dir(link("l"), file("l")),
				"/src/l": {mode: fs.ModeSymlink | 0o777, target: "OUTSIDE/secret", body: "pwned"},
			},
			want: "lists \"l\" twice",
		},
		{
			// An earlier vm cp from the guest made dst/src, with a link
			// in it; this one goes into dst, so to dst/src again.
			name: "a link an earlier copy left, then a directory by its name",
			tree: map[string]node{
				"/src":   dir(sub("l")),
				"/src/l": dir(file("x")),
			},
			other: pwned,
			before: func(t *testing.T, dst, outside string) {
				os.MkdirAll(filepath.Join(dst, "src"), 0o755)
				if err := os.Symlink(outside, filepath.Join(dst, "src", "l")); err != nil {
					t.Fatal(err)
				}
			},
			want: `"src/l" in ` + "PARENT/dst is a symlink, not a directory",
		},
		{
			name:  "a link an earlier copy left as the copy's own name",
			tree:  map[string]node{"/src": dir(file("x"))},
			other: pwned,
			before: func(t *testing.T, dst, outside string) {
				os.Mkdir(dst, 0o755)
				if err := os.Symlink(outside, filepath.Join(dst, "src")); err != nil {
					t.Fatal(err)
				}
			},
			want: `"src" in PARENT/dst is a symlink, not a directory`,
		},
		{
			name:  "a link an earlier copy left, then a file by its name",
			tree:  map[string]node{"/src": dir(file("l"))},
			other: pwned,
			before: func(t *testing.T, dst, outside string) {
				os.MkdirAll(filepath.Join(dst, "src"), 0o755)
				if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dst, "src", "l")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, dst, _ string) {
				// The link is replaced by the file, not written through.
				if b, err := os.ReadFile(filepath.Join(dst, "src", "l")); err != nil || string(b) != "pwned" {
					t.Errorf("src/l: %q, %v; want the guest's file in place of the link", b, err)
				}
			},
		},
		{
			name:  "a name that is ..",
			tree:  map[string]node{"/src": dir(sub("x/.."))}, // the client keeps the last part: ".."
			other: dir(file("x")),
			want:  `names may not be "." or ".."`,
		},
		{
			name:  "a name that is .",
			tree:  map[string]node{"/src": dir(sub("x/."))},
			other: dir(file("x")),
			want:  `names may not be "." or ".."`,
		},
		{
			// The client keeps the last part of these: they land in DST
			// as x and b.
			name:  "names ../x and a/b",
			tree:  map[string]node{"/src": dir(file("../x"), file("a/b"), file("../../../x2"))},
			other: pwned,
			check: func(t *testing.T, dst, _ string) {
				for _, n := range []string{"x", "b", "x2"} {
					if b, err := os.ReadFile(filepath.Join(dst, n)); err != nil || string(b) != "pwned" {
						t.Errorf("%s: %q, %v", n, b, err)
					}
				}
			},
		},
		{
			name:  "a NUL in a name",
			tree:  map[string]node{"/src": dir(file("a\x00b"))},
			other: pwned,
			want:  "names may not hold a NUL byte",
		},
		{
			name:  "a 5,000-byte name",
			tree:  map[string]node{"/src": dir(file(long))},
			other: pwned,
			want:  "names are at most 255 bytes",
		},
		{
			name: "a link that points out, with nothing below it",
			tree: map[string]node{
				"/src":   dir(link("l")),
				"/src/l": {mode: fs.ModeSymlink | 0o777, target: "OUTSIDE/../OUTSIDE"},
			},
			check: func(t *testing.T, dst, outside string) {
				// Made as a link, as before: never followed here.
				if l, err := os.Readlink(filepath.Join(dst, "l")); err != nil || l != outside+"/../"+outside {
					t.Errorf("l -> %q, %v", l, err)
				}
			},
		},
		{
			name: "a link target of 5,000 bytes",
			tree: map[string]node{
				"/src":   dir(link("l")),
				"/src/l": {mode: fs.ModeSymlink | 0o777, target: "/" + long},
			},
			want: "link targets are at most 4095 bytes",
		},
		{
			name:  "directories without end",
			tree:  map[string]node{"/src": dir(sub(long[:200]))},
			other: dir(sub(long[:200])),
			want:  "paths are at most 4096 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			canaryDir := filepath.Join(parent, "canary-dir")
			for _, d := range []string{outside, canaryDir} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			canary := filepath.Join(parent, "canary")
			os.WriteFile(canary, []byte("keep"), 0o644)
			os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
			tree := map[string]node{}
			for p, n := range tt.tree {
				n.target = strings.ReplaceAll(n.target, "OUTSIDE", outside)
				tree[p] = n
			}
			// DST does not exist (unless an earlier copy made it): the
			// copy makes it, in a root on DST's directory, beside the
			// canaries.
			dst := filepath.Join(parent, "dst")
			if tt.before != nil {
				tt.before(t, dst, outside)
			}

			_, err := download(hostileClient(t, &hostile{tree: tree, other: tt.other}), "/src", dst)

			switch {
			case tt.want == "" && err != nil:
				t.Errorf("download: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(tt.want, "PARENT", parent))):
				t.Errorf("download: %v; want an error saying %q", err, tt.want)
			case err != nil && len(err.Error()) >= 300:
				t.Errorf("a %d-character error: %.400s", len(err.Error()), err)
			case err != nil:
				t.Log(err)
			}
			if tt.want != "" && err != nil && !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("%v: neither invalid nor a conflict", err)
			}
			if b, _ := os.ReadFile(canary); string(b) != "keep" {
				t.Errorf("canary = %q", b)
			}
			for d, want := range map[string][]string{parent: {"canary", "canary-dir", "outside"}, canaryDir: nil, outside: {"secret"}} {
				var names []string
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if d != parent || e.Name() != "dst" {
						names = append(names, e.Name())
					}
				}
				if !slices.Equal(names, want) {
					t.Errorf("%s holds %q, want %q", d, names, want)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
				t.Errorf("outside/secret = %q", b)
			}
			if tt.check != nil {
				tt.check(t, dst, outside)
			}
		})
	}
}
