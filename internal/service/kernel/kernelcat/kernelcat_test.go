package kernelcat

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestEmbeddedIsValid(t *testing.T) {
	es := Embedded()
	if len(es) == 0 || es[0].Name != "debian-bookworm" {
		t.Fatalf("embedded catalog must start with debian-bookworm, got %v", es)
	}
	// The default kernel must be reachable on a Debian host with no other
	// network than its package sources: its first source is apt.
	if es[0].Sources[0].Kind != "apt" {
		t.Errorf("debian-bookworm's first source is %q, want apt", es[0].Sources[0].Kind)
	}
}

func TestLoadMerges(t *testing.T) {
	es, err := Load(context.Background(), []string{"testdata/extra.json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	deb, ok := Find(es, "debian-bookworm")
	if !ok || deb.Version != "6.1-override" || deb.Catalog != "testdata/extra.json" {
		t.Errorf("override not applied: %+v", deb)
	}
	if _, ok := Find(es, "local-test"); !ok {
		t.Error("extra entry missing")
	}
	if _, ok := Find(es, "ignite-5.10"); !ok {
		t.Error("embedded entry lost in merge")
	}
}

func TestLoadRemote(t *testing.T) {
	body, _ := os.ReadFile("testdata/extra.json")
	fetch := func(ctx context.Context, url string, limit int64) ([]byte, error) {
		if url != "https://example.org/k.json" {
			t.Fatalf("fetched %s", url)
		}
		return body, nil
	}
	es, err := Load(context.Background(), []string{"https://example.org/k.json"}, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := Find(es, "local-test"); e.Catalog != "https://example.org/k.json" {
		t.Errorf("origin = %q", e.Catalog)
	}
}

func TestParseRejects(t *testing.T) {
	broken, _ := os.ReadFile("testdata/broken.json")
	good := `"name":"k","version":"1","arch":"x86_64"`
	tests := []struct {
		name, doc, want string
	}{
		{"not json", string(broken), "not valid JSON (line 1)"},
		{"unknown field", `{"kernels":[],"extra":1}`, "unknown field"},
		{"bad name", `{"kernels":[{"name":"../x","version":"1","arch":"x86_64","sources":[{"kind":"apt","package":"p1"}]}]}`, "not valid"},
		{"no sources", `{"kernels":[{` + good + `,"sources":[]}]}`, "no sources"},
		{"bad sha", `{"kernels":[{` + good + `,"sources":[{"kind":"deb","url":"https://x/y.deb","sha256":"abc"}]}]}`, "sha256"},
		{"plain http", `{"kernels":[{` + good + `,"sources":[{"kind":"url","url":"http://example.org/v","sha256":"` + strings.Repeat("a", 64) + `"}]}]}`, "https"},
		{"bad kind", `{"kernels":[{` + good + `,"sources":[{"kind":"ftp"}]}]}`, "unknown source kind"},
		{"bad package", `{"kernels":[{` + good + `,"sources":[{"kind":"apt","package":"-rf /"}]}]}`, "package"},
		{"arm", `{"kernels":[{"name":"k","version":"1","arch":"arm64","sources":[{"kind":"apt","package":"p1"}]}]}`, "x86_64"},
		{"duplicate", `{"kernels":[{` + good + `,"sources":[{"kind":"apt","package":"p1"}]},{` + good + `,"sources":[{"kind":"apt","package":"p1"}]}]}`, "twice"},
		{"trailing", `{"kernels":[]} {}`, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.json", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("err = %v, want invalid containing %q", err, tt.want)
			}
		})
	}
	if _, err := Load(context.Background(), []string{"testdata/broken.json"}, nil); err == nil || !strings.Contains(err.Error(), "testdata/broken.json") {
		t.Fatalf("Load of broken file: %v", err)
	}
	if _, err := Load(context.Background(), []string{"testdata/missing.json"}, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Load of missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(embedded)
	b, _ := os.ReadFile("testdata/extra.json")
	f.Add(b)
	f.Add([]byte(`{"kernels":[{"name":"a"}]}`))
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
