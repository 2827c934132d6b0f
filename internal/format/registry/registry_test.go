package registry

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestRebase(t *testing.T) {
	tests := []struct {
		ref, mirror, want string
		ok                bool
	}{
		{"docker.io/library/debian:bookworm", "http://127.0.0.1:5000", "127.0.0.1:5000/library/debian:bookworm", true},
		{"debian:bookworm", "https://mirror.example.org", "mirror.example.org/library/debian:bookworm", true},
		{"quay.io/a/b@sha256:" + strings.Repeat("a", 64), "https://m.example/v2/proxy/", "m.example/proxy/a/b@sha256:" + strings.Repeat("a", 64), true},
		{"debian:bookworm", "http://mirror.example.org", "mirror.example.org/library/debian:bookworm", true},
		{"debian:bookworm", "not a url", "", false},
	}
	for _, tt := range tests {
		r, _ := name.ParseReference(tt.ref)
		got, err := rebase(r, tt.mirror)
		if (err == nil) != tt.ok {
			t.Errorf("rebase(%s, %s): err %v", tt.ref, tt.mirror, err)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("rebase(%s, %s) = %s, want %s", tt.ref, tt.mirror, got, tt.want)
		}
	}
}

func TestCandidatesMirrorsFirst(t *testing.T) {
	c := &Client{Mirrors: map[string][]string{"docker.io": {"https://a.example", "http://127.0.0.1:5000"}}}
	r, _ := name.ParseReference("debian:bookworm")
	var got []string
	for _, cand := range c.candidates(r) {
		got = append(got, cand.String())
	}
	want := "a.example/library/debian:bookworm 127.0.0.1:5000/library/debian:bookworm debian:bookworm"
	if strings.Join(got, " ") != want {
		t.Fatalf("candidates = %v", got)
	}
}

func newRegistry(t *testing.T) string {
	srv := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// TestMirrorAndIndex pulls through a mirror (the origin does not exist)
// and picks linux/amd64 out of a multi-arch index.
func TestMirrorAndIndex(t *testing.T) {
	host := newRegistry(t)
	amd, _ := random.Image(100, 1)
	arm, _ := random.Image(100, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ref, _ := name.ParseReference(host + "/library/multi:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	c := &Client{Mirrors: map[string][]string{"docker.io": {"http://" + host}}}
	var tried []string
	res, err := c.Image(context.Background(), "docker.io/library/multi:1", func(s string) { tried = append(tried, s) })
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.Digest()
	if res.Digest != want.String() {
		t.Fatalf("picked %s, want the amd64 image %s", res.Digest, want)
	}
	if !strings.HasPrefix(res.From, host) || len(tried) != 1 {
		t.Fatalf("fetched from %s after trying %v", res.From, tried)
	}

	_, err = c.Image(context.Background(), host+"/library/nope:1", nil)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing image: %v", err)
	}
	_, err = c.Image(context.Background(), "Not A Ref!!", nil)
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("bad reference: %v", err)
	}
}

func TestPlainHTTPOnlyToLoopbackOrListed(t *testing.T) {
	// 10.0.0.1 is never dialled: the guard refuses before any connection.
	c := &Client{}
	_, err := c.Image(context.Background(), "10.0.0.1:5000/x:1", nil)
	if err == nil || !strings.Contains(err.Error(), "plain http to 10.0.0.1:5000 refused") {
		t.Fatalf("private-range registry over http: %v", err)
	}
	c = &Client{Mirrors: map[string][]string{"docker.io": {"http://10.0.0.1:5000"}}}
	_, err = c.Image(context.Background(), "docker.io/library/x:1@sha256:"+strings.Repeat("a", 64), nil)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("http mirror off loopback: %v", err)
	}
	g := httpGuard{next: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("dialled") }), allowed: map[string]bool{"10.0.0.1:5000": true}}
	req, _ := http.NewRequest("GET", "http://10.0.0.1:5000/v2/", nil)
	if _, err := g.RoundTrip(req); err == nil || err.Error() != "dialled" {
		t.Fatalf("listed insecure registry was refused: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
