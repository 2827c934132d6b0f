package secretproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An upstream failure reaches the guest as a 502 saying what happened:
// a certificate that does not verify (with the verifier's reason), a host
// the VM may not reach (with Dial's reason).
func TestUpstreamErrors(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	cases := []struct {
		url, kind, body string
	}{
		{"https://evil.test/x", "upstream-certificate",
			"banger secrets proxy: evil.test: the server's certificate does not verify: x509: certificate signed by unknown authority"},
		{"https://down.test/x", "upstream-unreachable",
			"banger secrets proxy: down.test: cannot reach it: egress policy of VM test refuses down.test:443\n"},
	}
	for _, h2 := range []bool{false, true} {
		client := e.client(t, h2)
		for _, tc := range cases {
			req, _ := http.NewRequest("GET", tc.url, nil)
			req.Header.Set("Authorization", "Bearer "+s.evil.Placeholder)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Banger-Proxy-Error") != tc.kind || !strings.HasPrefix(string(body), tc.body) {
				t.Errorf("%s (h2 %v): %d %q %q, want 502 %q %q", tc.url, h2, resp.StatusCode, resp.Header.Get("X-Banger-Proxy-Error"), body, tc.kind, tc.body)
			}
			if strings.Contains(string(body), evilValue) {
				t.Errorf("the guest was told the value: %q", body)
			}
		}
	}
	if e.evil.count() != 0 {
		t.Errorf("the server with the untrusted certificate got %d requests", e.evil.count())
	}
}

// A CONNECT to a host no secret names is spliced: the guest's TLS is the
// real server's, end to end, and an unreachable one is a 502 with Dial's
// reason.
func TestTunnel(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	got := e.rawProxy(t, []byte("CONNECT nowhere.test:443 HTTP/1.1\r\nHost: nowhere.test:443\r\n\r\n"))
	if !strings.HasPrefix(got, "HTTP/1.1 502") || !strings.Contains(got, "cannot reach it: egress policy of VM test refuses nowhere.test:443") {
		t.Errorf("CONNECT to an unreachable host: %q", got)
	}

	// A protocol that half-closes: the server answers after the guest's
	// end of stream, and the answer still arrives.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		io.WriteString(c, "got "+string(b))
	}()
	p, err := New("t", Config{Dial: func(ctx context.Context, host, port string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	guest, proxySide := tcpPair(t)
	go p.ServeConn(context.Background(), proxySide)
	guest.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(guest, "CONNECT raw.test:9000 HTTP/1.1\r\nHost: raw.test:9000\r\n\r\nhello")
	buf := make([]byte, len(connectOK))
	if _, err := io.ReadFull(guest, buf); err != nil || string(buf) != connectOK {
		t.Fatalf("CONNECT answer %q, %v", buf, err)
	}
	guest.(*net.TCPConn).CloseWrite()
	rest, _ := io.ReadAll(guest)
	if string(rest) != "got hello" {
		t.Errorf("through the tunnel after a half-close: %q", rest)
	}
}

// tcpPair is two ends of a loopback TCP connection (net.Pipe has no
// half-close).
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// After Close nothing is replaced, connections being served are closed,
// and a new one is closed at once.
func TestClose(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	client := e.client(t, false)
	get := func() error {
		req, _ := http.NewRequest("GET", "https://api.test/", nil)
		req.Header.Set("Authorization", "Bearer "+s.gh.Placeholder)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	before := e.api.count()
	e.p.Close()
	if err := get(); err == nil {
		t.Error("a request after Close succeeded")
	}
	if n := e.api.count(); n != before {
		t.Errorf("the server got %d requests after Close", n-before)
	}

	// A request already inside an intercepted connection when Close
	// comes: the lock Close takes decides, and it says no.
	h := http.Header{"Authorization": {"Bearer " + s.gh.Placeholder}}
	r, _ := http.NewRequest("GET", "https://api.test/", nil)
	e.p.rewrite(r, h, "api.test", true)
	if h.Get("Authorization") != "Bearer "+s.gh.Placeholder {
		t.Errorf("replaced after Close: %q", h.Get("Authorization"))
	}
	if e.p.scrub("x "+ghValue) != "x "+ghValue {
		t.Error("Close kept the values")
	}

	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { e.p.ServeConn(context.Background(), b); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn after Close did not return")
	}
	a.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Error("a connection served after Close is open")
	}
}

// ServeConn ends with its context.
func TestServeConnContext(t *testing.T) {
	e := newEnv(t)
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.ServeConn(ctx, b); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn outlived its context")
	}
	a.Close()
}

// A tunnel ends when neither side has moved for its idle time, and not
// while one side keeps moving (a long download with a quiet upload side).
func TestSpliceIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	guest, g2 := tcpPair(t)
	s2, server := tcpPair(t)
	done := make(chan struct{})
	go func() { splice(g2, s2, idle); close(done) }()
	go io.Copy(io.Discard, guest)
	for range 8 {
		if _, err := server.Write([]byte("x")); err != nil {
			t.Fatalf("the tunnel ended while the server was sending: %v", err)
		}
		time.Sleep(idle / 3)
	}
	select {
	case <-done:
		t.Fatal("the tunnel ended while the server was sending")
	default:
	}
	select {
	case <-done:
	case <-time.After(10 * idle):
		t.Fatal("an idle tunnel stayed open")
	}
}
