package flatten

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// e is a layer entry in tests.
type e struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
	xattr            string
}

func layer(t testing.TB, ents ...e) []byte {
	specs := make([]testkit.TarSpec, len(ents))
	for i, x := range ents {
		specs[i] = testkit.TarSpec{Name: x.name, Body: x.body, Link: x.link, Type: x.typ, Mode: x.mode, UID: x.uid, Capability: x.xattr}
	}
	return testkit.Tar(t, specs)
}

type got struct {
	typ        byte
	mode       int64
	uid        int
	body, link string
	xattr      string
	dev        int64
}

func flattenAll(t *testing.T, layers ...[]byte) (map[string]got, []string, error) {
	t.Helper()
	tr, err := New(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, l := range layers {
		if err := tr.Apply(bytes.NewReader(l)); err != nil {
			return nil, nil, err
		}
	}
	var out bytes.Buffer
	if err := tr.WriteTar(&out); err != nil {
		t.Fatal(err)
	}
	res := map[string]got{}
	var order []string
	rd := tar.NewReader(&out)
	for {
		h, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rd)
		name := strings.TrimSuffix(h.Name, "/")
		order = append(order, name)
		res[name] = got{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, body: string(b), link: h.Linkname, xattr: h.PAXRecords["SCHILY.xattr.security.capability"], dev: h.Devmajor}
	}
	return res, order, nil
}

func TestFlattenMergesLayers(t *testing.T) {
	base := layer(t,
		e{name: "etc/", typ: tar.TypeDir},
		e{name: "etc/passwd", body: "root"},
		e{name: "etc/old", body: "gone soon"},
		e{name: "opaque/", typ: tar.TypeDir},
		e{name: "opaque/lower", body: "hidden"},
		e{name: "keep/", typ: tar.TypeDir, mode: 0o700},
		e{name: "keep/lower", body: "stays"},
		e{name: "bin/", typ: tar.TypeDir},
		e{name: "bin/busybox", body: "BB", mode: 0o4755, xattr: "cap"},
		e{name: "bin/sh", link: "bin/busybox", typ: tar.TypeLink},
		e{name: "bin/ls", link: "bin/busybox", typ: tar.TypeLink},
		e{name: "dev/", typ: tar.TypeDir},
		e{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		e{name: "a", link: "b", typ: tar.TypeSymlink},
		e{name: "b", link: "c", typ: tar.TypeSymlink},
		e{name: "c", body: "end of chain"},
	)
	top := layer(t,
		e{name: "etc/.wh.old", body: ""},
		e{name: "opaque/.wh..wh..opq"},
		e{name: "opaque/upper", body: "new"},
		e{name: "keep/", typ: tar.TypeDir, mode: 0o750, uid: 7},
		e{name: "keep/upper", body: "added"},
		e{name: "etc/passwd", body: "root:x:0:0"},
		e{name: "bin/.wh.busybox"},
		e{name: "nested/deep/file", body: "parents made"},
	)
	res, order, err := flattenAll(t, base, top)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"etc/old", "opaque/lower", "bin/busybox"} {
		if _, ok := res[absent]; ok {
			t.Errorf("%s survived its whiteout", absent)
		}
	}
	checks := map[string]func(got) bool{
		"etc/passwd":       func(g got) bool { return g.body == "root:x:0:0" },
		"opaque/upper":     func(g got) bool { return g.body == "new" },
		"keep":             func(g got) bool { return g.mode == 0o750 && g.uid == 7 },
		"keep/lower":       func(g got) bool { return g.body == "stays" },
		"keep/upper":       func(g got) bool { return g.body == "added" },
		"dev/null":         func(g got) bool { return g.typ == tar.TypeChar && g.dev == 1 && g.mode == 0o666 },
		"a":                func(g got) bool { return g.typ == tar.TypeSymlink && g.link == "b" },
		"b":                func(g got) bool { return g.link == "c" },
		"nested/deep/file": func(g got) bool { return g.body == "parents made" },
		// busybox was deleted but its hard links keep its content, mode
		// and xattrs: the first becomes the file, the second links to it.
		"bin/ls": func(g got) bool {
			return g.typ == tar.TypeReg && g.body == "BB" && g.mode == 0o4755 && g.xattr == "cap"
		},
		"bin/sh": func(g got) bool { return g.typ == tar.TypeLink && g.link == "bin/ls" },
	}
	for name, ok := range checks {
		if g, found := res[name]; !found || !ok(g) {
			t.Errorf("%s = %+v (found %v)", name, g, found)
		}
	}
	// Parents come before children.
	seen := map[string]bool{}
	for _, name := range order {
		if i := strings.LastIndex(name, "/"); i > 0 && !seen[name[:i]] {
			t.Errorf("%s written before its parent", name)
		}
		seen[name] = true
	}
}

func TestHardLinkKeptWhenTargetStays(t *testing.T) {
	res, _, err := flattenAll(t, layer(t, e{name: "x", body: "X", mode: 0o4711}, e{name: "y", link: "x", typ: tar.TypeLink}))
	if err != nil {
		t.Fatal(err)
	}
	if res["y"].typ != tar.TypeLink || res["y"].link != "x" || res["x"].mode != 0o4711 {
		t.Fatalf("x=%+v y=%+v", res["x"], res["y"])
	}
}

func TestExtras(t *testing.T) {
	tr, _ := New(t.TempDir(), 0)
	defer tr.Close()
	tr.Apply(bytes.NewReader(layer(t, e{name: "etc/", typ: tar.TypeDir}, e{name: "etc/resolv.conf", link: "../run/resolv.conf", typ: tar.TypeSymlink})))
	for _, x := range []Extra{
		{Path: "/.banger/", Mode: 0o755},
		{Path: "/etc/resolv.conf", Mode: 0o644, Body: []byte("nameserver 10.0.2.3\n")},
		{Path: "/root/.ssh/authorized_keys", Mode: 0o600, Body: []byte("ssh-ed25519 AAAA x\n")},
	} {
		if err := tr.Add(x); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	tr.WriteTar(&out)
	rd := tar.NewReader(&out)
	found := map[string]string{}
	for {
		h, err := rd.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(rd)
		found[h.Name] = string(b)
	}
	if found["etc/resolv.conf"] != "nameserver 10.0.2.3\n" || found["root/.ssh/authorized_keys"] == "" {
		t.Fatalf("extras = %v", found)
	}
	if _, ok := found[".banger/"]; !ok {
		t.Fatalf("no /.banger/: %v", found)
	}
}

var hostile = []struct {
	name string
	ents []e
	want string
}{
	{"dotdot", []e{{name: "../../etc/passwd", body: "x"}}, "leaves the archive root"},
	{"absolute", []e{{name: "/etc/passwd", body: "x"}}, "absolute path"},
	{"through symlink", []e{{name: "etc", link: "/etc", typ: tar.TypeSymlink}, {name: "etc/passwd", body: "x"}}, "may not write through a symlink"},
	{"through relative symlink", []e{{name: "up", link: "../..", typ: tar.TypeSymlink}, {name: "up/x", body: "x"}}, "may not write through a symlink"},
	{"hardlink outside", []e{{name: "l", link: "../../etc/shadow", typ: tar.TypeLink}}, "leaves the archive root"},
	{"hardlink absolute", []e{{name: "l", link: "/etc/shadow", typ: tar.TypeLink}}, "absolute path"},
	{"hardlink missing", []e{{name: "l", link: "nope", typ: tar.TypeLink}}, "not a regular file"},
	{"hardlink through symlink", []e{{name: "s", link: "/", typ: tar.TypeSymlink}, {name: "l", link: "s/etc/shadow", typ: tar.TypeLink}}, "may not write through a symlink"},
	{"hardlink to dir", []e{{name: "d/", typ: tar.TypeDir}, {name: "l", link: "d", typ: tar.TypeLink}}, "not a regular file"},
	{"over limit", []e{{name: "big", body: strings.Repeat("x", 2<<20)}}, "limit"},
}

func TestHostileLayers(t *testing.T) {
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := flattenAll(t, layer(t, tt.ents...))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("err = %v, want invalid containing %q", err, tt.want)
			}
		})
	}
}

func TestTruncatedLayer(t *testing.T) {
	l := layer(t, e{name: "a", body: strings.Repeat("a", 5000)}, e{name: "b", body: strings.Repeat("b", 2000)})
	// Inside a's header, inside a's data, inside b's data.
	for _, cut := range []int{300, 3000, len(l) - 1024 - 1000} {
		_, _, err := flattenAll(t, l[:cut])
		if err == nil || !strings.Contains(err.Error(), "truncated") || !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
}

func FuzzFlatten(f *testing.F) {
	f.Add(layer(f, e{name: "a/", typ: tar.TypeDir}, e{name: "a/b", body: "x"}, e{name: "a/.wh.b"}, e{name: "l", link: "a/b", typ: tar.TypeLink}))
	f.Add(layer(f, e{name: "s", link: "/", typ: tar.TypeSymlink}, e{name: "s/x", body: "x"}))
	f.Add(layer(f, e{name: "d/.wh..wh..opq"}, e{name: "../x", body: "x"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := New(t.TempDir(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if err := tr.Apply(bytes.NewReader(b)); err != nil {
			return
		}
		var out bytes.Buffer
		if err := tr.WriteTar(&out); err != nil {
			t.Fatalf("accepted layer cannot be written: %v", err)
		}
		rd := tar.NewReader(&out)
		for {
			h, err := rd.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("written tar unreadable: %v", err)
			}
			if strings.HasPrefix(h.Name, "/") || strings.Contains("/"+h.Name+"/", "/../") {
				t.Fatalf("escaping entry %q written", h.Name)
			}
		}
	})
}

func TestStreamHostile(t *testing.T) {
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := New(t.TempDir(), 1<<20)
			defer tr.Close()
			_, err := tr.Stream(bytes.NewReader(layer(t, tt.ents...)), io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("err = %v, want invalid containing %q", err, tt.want)
			}
		})
	}
}

func TestStream(t *testing.T) {
	tr, _ := New(t.TempDir(), 1<<20)
	defer tr.Close()
	var out bytes.Buffer
	in := layer(t,
		e{name: "./etc/", typ: tar.TypeDir},
		e{name: "./etc/resolv.conf", link: "../run/resolv.conf", typ: tar.TypeSymlink},
		e{name: "./bin/busybox", body: "BB", mode: 0o4755},
		e{name: "./bin/sh", link: "./bin/busybox", typ: tar.TypeLink},
		e{name: "./etc/.wh.ignored"},
		e{name: "./etc/hostname", body: "image\n"},
	)
	n, err := tr.Stream(bytes.NewReader(in), &out, []Extra{
		{Path: "/etc/resolv.conf", Mode: 0o644, Body: []byte("nameserver 10.0.2.3\n")},
		{Path: "/etc/hostname", Mode: 0o644, Body: []byte("vm\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("files = %d", n)
	}
	rd := tar.NewReader(&out)
	var names []string
	for {
		h, err := rd.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name+"|"+h.Linkname)
	}
	// Each path once: the extras replace the image's entries (the ext4
	// writer cannot write a file twice).
	want := "etc/||bin/busybox||bin/sh|bin/busybox|etc/resolv.conf||etc/hostname|"
	if strings.Join(names, "|") != want {
		t.Fatalf("stream wrote %v", names)
	}
}

// A layer's hostile names are refused in messages that quote a bounded
// part of them and say the rule (a 5,000-byte name once reached the ext4
// writer, whose refusal quoted it whole and said only "invalid name").
func TestRefusalsAreBoundedAndSayTheRule(t *testing.T) {
	long := strings.Repeat("a", 5000)
	for _, tt := range []struct {
		name string
		ents []e
		rule string
	}{
		{"5000-byte name", []e{{name: long, body: "x"}}, "names are at most 4096 bytes"},
		{"300-byte part", []e{{name: "etc/" + strings.Repeat("p", 300), body: "x"}}, "each part of a name is at most 255 bytes"},
		{"dotdot", []e{{name: "../" + long[:4000], body: "x"}}, "leaves the archive root"},
		{"hard link to an absolute target", []e{{name: "l", link: "/etc/" + long[:4000], typ: tar.TypeLink}}, "names are relative to the archive root"},
		{"hard link leaving the root", []e{{name: "l", link: "../../" + long[:4000], typ: tar.TypeLink}}, "leaves the archive root"},
		{"hard link to nothing", []e{{name: "l", link: strings.Repeat("d/", 2000) + "f", typ: tar.TypeLink}}, "a hard link must name one"},
		{"long symlink target", []e{{name: "s", link: long, typ: tar.TypeSymlink}}, "link targets are at most 4095 bytes"},
		{"through a symlink", []e{{name: long[:200], link: "/" + long[:4000], typ: tar.TypeSymlink}, {name: long[:200] + "/x", body: "x"}}, "may not write through a symlink"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := layer(t, tt.ents...)
			_, _, err := flattenAll(t, l)
			checkRefusal(t, "Apply", err, tt.rule)
			tr, _ := New(t.TempDir(), 1<<20)
			defer tr.Close()
			_, err = tr.Stream(bytes.NewReader(l), io.Discard, nil)
			checkRefusal(t, "Stream", err, tt.rule)
		})
	}
}

func checkRefusal(t *testing.T, by string, err error, rule string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s accepted the layer; want refused: %s", by, rule)
	case !errors.Is(err, errdefs.ErrInvalid):
		t.Errorf("%s: %v: not ErrInvalid", by, err)
	case len(err.Error()) >= 300:
		t.Errorf("%s: a %d-character message: %.400s", by, len(err.Error()), err)
	case !strings.Contains(err.Error(), rule):
		t.Errorf("%s: %v: does not say %q", by, err, rule)
	default:
		t.Logf("%s: %v", by, err)
	}
}
