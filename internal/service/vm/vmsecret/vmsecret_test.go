package vmsecret

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
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

// noDeadlines is a connection as an SSH channel is: deadlines refused.
type noDeadlines struct{ net.Conn }

func (noDeadlines) SetDeadline(time.Time) error      { return errors.New("not supported") }
func (noDeadlines) SetReadDeadline(time.Time) error  { return errors.New("not supported") }
func (noDeadlines) SetWriteDeadline(time.Time) error { return errors.New("not supported") }

// A CONNECT over a connection without deadlines (the guest's, an SSH
// channel) is answered: net/http, taking the connection over, waits for
// its pending read to be cut short by a deadline.
func TestConnectOverChannel(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	p, err := secretproxy.New("v", secretproxy.Config{Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", up.Addr().String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	guest, host := net.Pipe()
	sc, err := socketFor(noDeadlines{host})
	if err != nil {
		t.Fatal(err)
	}
	go p.ServeConn(context.Background(), sc)
	guest.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(guest, "CONNECT echo.test:443 HTTP/1.1\r\nHost: echo.test:443\r\n\r\n")
	br := bufio.NewReader(guest)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(guest, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Errorf("through the tunnel: %q %v", b, err)
	}
}
