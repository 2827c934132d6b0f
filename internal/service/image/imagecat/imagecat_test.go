package imagecat

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestEmbedded(t *testing.T) {
	es := Embedded()
	if es[0].Name != "debian-bookworm" || es[0].Sources[0].Ref != "docker.io/library/debian:bookworm" || es[0].Sources[1].Kind != "debootstrap" {
		t.Fatalf("debian-bookworm must come first, from docker.io then debootstrap: %+v", es[0])
	}
}

func TestParseRejects(t *testing.T) {
	good := `"name":"i","kernel":"k"`
	tests := []struct{ doc, want string }{
		{`{"images":[{` + good + `,"sources":[{"kind":"oci","ref":"UPPER CASE"}]}]}`, "ref"},
		{`{"images":[{` + good + `,"sources":[{"kind":"bundle","url":"ftp://x","sha256":"` + strings.Repeat("a", 64) + `"}]}]}`, "https"},
		{`{"images":[{` + good + `,"sources":[{"kind":"debootstrap","suite":"bookworm; rm -rf /"}]}]}`, "suite"},
		{`{"images":[{` + good + `,"sources":[{"kind":"debootstrap","suite":"bookworm","packages":["--evil"]}]}]}`, "package"},
		{`{"images":[{"name":"i","kernel":"../k","sources":[{"kind":"oci","ref":"a/b"}]}]}`, "not valid"},
		{`{"images":[{` + good + `,"sources":[]}]}`, "no sources"},
		{`{"images":[{` + good + `,`, "not valid JSON"},
	}
	for _, tt := range tests {
		_, err := Parse("t.json", []byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Parse(%s) = %v, want %q", tt.doc, err, tt.want)
		}
	}
	if _, err := Load(context.Background(), []string{"testdata/missing.json"}, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(embedded)
	f.Add([]byte(`{"images":[{"name":"a","kernel":"k","sources":[{"kind":"bundle","url":"https://x/b.tar.zst","sha256":"00"}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		for _, e := range es {
			if err := validate(e); err != nil {
				t.Fatalf("accepted invalid entry: %v", err)
			}
		}
	})
}
