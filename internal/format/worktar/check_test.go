package worktar

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

type spec = testkit.TarSpec

// Each stream a hostile guest could send is refused with a short error
// naming its rule, and no entry after the bad one is passed on.
func TestCheckRefuses(t *testing.T) {
	long := strings.Repeat("n", 5000)
	for _, c := range []struct {
		name  string
		ents  []spec
		rules Rules
		want  string
	}{
		{"dot-dot", []spec{{Name: "a/../../etc/cron.d/x", Body: "evil"}}, Rules{}, `names may not be "." or ".."`},
		{"absolute", []spec{{Name: "/etc/passwd", Body: "evil"}}, Rules{}, "absolute paths are not entries"},
		{"long name", []spec{{Name: long, Body: "x"}}, Rules{}, "paths are at most 4096 bytes"},
		{"long component", []spec{{Name: strings.Repeat("c", 300), Body: "x"}}, Rules{}, "names are at most 255 bytes"},
		{"device in work", []spec{{Name: "null", Type: tar.TypeChar}}, Rules{}, "device nodes and FIFOs are not work"},
		{"hard link in work", []spec{{Name: "f", Body: "x"}, {Name: "g", Type: tar.TypeLink, Link: "f"}}, Rules{}, "only to a non-directory passed before"},
		{"hard link out", []spec{{Name: "g", Type: tar.TypeLink, Link: "../../etc/shadow"}}, Rules{Root: true}, "only to a non-directory passed before"},
		{"long link target", []spec{{Name: "l", Type: tar.TypeSymlink, Link: long}}, Rules{}, "link targets are at most 4095 bytes"},
		{"entries", []spec{{Name: "a"}, {Name: "b"}, {Name: "c"}}, Rules{Entries: 2}, "more than 2 entries (max_pull_entries)"},
		{"bytes", []spec{{Name: "a", Body: "123456"}, {Name: "b", Body: "123456"}}, Rules{Bytes: 10}, "past 10 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.rules.Entries == 0 {
				c.rules.Entries = 100
			}
			if c.rules.Bytes == 0 {
				c.rules.Bytes = 1 << 20
			}
			var out bytes.Buffer
			err := Check(bytes.NewReader(testkit.Tar(t, c.ents)), &out, c.rules)
			if err == nil {
				t.Fatal("passed")
			}
			if !strings.Contains(err.Error(), c.want) || len(err.Error()) > 300 {
				t.Fatalf("err = %q (%d chars), want under 300 naming %q", err, len(err.Error()), c.want)
			}
			// The bad entry (the last) did not go out.
			tr := tar.NewReader(&out)
			n := 0
			for {
				if _, err := tr.Next(); err != nil {
					break
				}
				n++
			}
			if n >= len(c.ents) {
				t.Fatalf("%d entries went out of %d, the bad one among them", n, len(c.ents))
			}
		})
	}
}

// An honest work tree passes whole, rewritten without the sender's owners
// or extended attributes; a root tree keeps owners, links and devices.
func TestCheckPasses(t *testing.T) {
	ents := []spec{
		{Name: "src/", Type: tar.TypeDir},
		{Name: "src/a.go", Body: "package a\n", UID: 1000, Capability: "x"},
		{Name: "l", Type: tar.TypeSymlink, Link: "/etc/shadow"},
	}
	var out bytes.Buffer
	if err := Check(bytes.NewReader(testkit.Tar(t, ents)), &out, Rules{Entries: 3, Bytes: 10}); err != nil {
		t.Fatal(err)
	}
	got := testkit.ReadTar(t, &out)
	if e := got["src/a.go"]; e.Body != "package a\n" || e.Header.Uid != 0 || len(e.Header.PAXRecords) != 0 {
		t.Errorf("src/a.go = %+v", e.Header)
	}
	if got["l"].Header.Linkname != "/etc/shadow" || len(got) != 3 {
		t.Errorf("got %v", got)
	}
	root := append(ents, spec{Name: "h", Type: tar.TypeLink, Link: "src/a.go"}, spec{Name: "null", Type: tar.TypeChar})
	out.Reset()
	if err := Check(bytes.NewReader(testkit.Tar(t, root)), &out, Rules{Entries: 10, Bytes: 10, Root: true}); err != nil {
		t.Fatal(err)
	}
	got = testkit.ReadTar(t, &out)
	if got["src/a.go"].Header.Uid != 1000 || got["h"].Header.Linkname != "src/a.go" || got["null"].Header.Devmajor != 1 {
		t.Errorf("root tree: %v", got)
	}
}
