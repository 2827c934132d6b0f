package vmsecret

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/service/secretproxy"
	"github.com/banger-dev/banger/internal/wire/api"
)

// A request from any caller is checked whole before anything is made.
func TestCheck(t *testing.T) {
	good := func() api.SecretGrant {
		return api.SecretGrant{Name: "gh", Value: "ghp_x", Hosts: []string{"API.GitHub.com."}, Env: "GH_TOKEN"}
	}
	with := func(f func(*api.SecretGrant)) api.SecretsRequest {
		g := good()
		f(&g)
		return api.SecretsRequest{Secrets: []api.SecretGrant{g}}
	}
	req, err := Check(with(func(*api.SecretGrant) {}))
	if err != nil || req.Secrets[0].Hosts[0] != "api.github.com" {
		t.Fatalf("good request: %v %v", req, err)
	}
	for _, tc := range []struct {
		name string
		req  api.SecretsRequest
		want string
	}{
		{"none", api.SecretsRequest{}, "no secrets"},
		{"bad name", with(func(g *api.SecretGrant) { g.Name = "../x" }), "lower-case"},
		{"empty value", with(func(g *api.SecretGrant) { g.Value = "" }), "1 to"},
		{"header injection", with(func(g *api.SecretGrant) { g.Value = "x\r\nX-Evil: 1" }), "one line"},
		{"huge value", with(func(g *api.SecretGrant) { g.Value = strings.Repeat("a", 17<<10) }), "1 to"},
		{"no hosts", with(func(g *api.SecretGrant) { g.Hosts = nil }), "hosts"},
		{"an address", with(func(g *api.SecretGrant) { g.Hosts = []string{"127.0.0.1"} }), "is an address"},
		{"not a name", with(func(g *api.SecretGrant) { g.Hosts = []string{"a b"} }), "not a DNS name"},
		{"nowhere", with(func(g *api.SecretGrant) { g.Env = "" }), "env or file"},
		{"banger's variable", with(func(g *api.SecretGrant) { g.Env = "HTTPS_PROXY" }), "one banger sets"},
		{"file escapes", with(func(g *api.SecretGrant) { g.File = "../../etc/passwd" }), "not a path inside"},
		{"twice", api.SecretsRequest{Secrets: []api.SecretGrant{good(), good()}}, "given twice"},
	} {
		if _, err := Check(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The record counts uses and attempts, bounded, and survives a reload.
func TestRecord(t *testing.T) {
	dir := t.TempDir()
	r := loadRecord(dir)
	r.given([]api.SecretGrant{{Name: "gh", Hosts: []string{"api.github.com"}, Env: "GH_TOKEN"}})
	now := time.Now()
	r.event(secretproxy.Event{Time: now, Secret: "gh", Host: "api.github.com", Kind: "use"})
	r.event(secretproxy.Event{Time: now, Secret: "gh", Host: "api.github.com", Kind: "use"})
	for i := range maxAttempts + 50 {
		host := "evil" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + ".test"
		r.event(secretproxy.Event{Time: now, Secret: "gh", Host: host, Kind: "attempt", Why: "not bound to this host"})
	}
	r.event(secretproxy.Event{Time: now, Secret: "unknown", Host: "x", Kind: "use"})
	r.save()
	got := View(dir)
	if len(got) != 1 || got[0].Uses != 2 || got[0].Held {
		t.Fatalf("record: %+v", got)
	}
	if n := len(got[0].Attempts); n != maxAttempts+1 {
		t.Errorf("%d attempt lines, want %d and one for the rest", n, maxAttempts+1)
	}
	last := got[0].Attempts[len(got[0].Attempts)-1]
	if last.Host != "(other hosts)" || last.Count != 50 {
		t.Errorf("the rest: %+v", last)
	}
}

// A guest sending a placeholder where it may not go, in a loop, is
// counted every time and logged once.
func TestAttemptsLoggedOnce(t *testing.T) {
	var log bytes.Buffer
	s := New(Deps{Log: slog.New(slog.NewTextHandler(&log, nil))})
	r := loadRecord(t.TempDir())
	r.given([]api.SecretGrant{{Name: "gh", Hosts: []string{"api.github.com"}, Env: "GH_TOKEN"}})
	for range 1000 {
		s.note("v", r, secretproxy.Event{Time: time.Now(), Secret: "gh", Host: "evil.test", Kind: "attempt", Why: "not bound to this host"})
	}
	if n := strings.Count(log.String(), "placeholder sent"); n != 1 {
		t.Errorf("%d log lines for 1000 attempts, want 1", n)
	}
	if got := r.list(nil)[0].Attempts; len(got) != 1 || got[0].Count != 1000 {
		t.Errorf("record: %+v", got)
	}
}
