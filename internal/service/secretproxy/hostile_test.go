package secretproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// What a hostile or confused guest may send gets an answer or a closed
// connection, and the proxy goes on serving others.
func TestHostileInput(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	big := strings.Repeat("a", 100<<10)
	cases := []struct {
		name, send string
		want       []string // any of these prefixes; "" is a closed connection
	}{
		{"100 KiB header, plain", "GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nX-Big: " + big + "\r\n\r\n", []string{"HTTP/1.1 431", ""}},
		{"100 KiB request line", "GET http://plain.test/" + big + " HTTP/1.1\r\nHost: plain.test\r\n\r\n", []string{"HTTP/1.1 431", ""}},
		{"100 KiB header on CONNECT", "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test\r\nX-Big: " + big + "\r\n\r\n", []string{"HTTP/1.1 431", ""}},
		{"garbage", "\x16\x03\x01\x00\xff\x00garbage\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"binary without a line end", strings.Repeat("\x00\xff", 40<<10), []string{"HTTP/1.1 431", "HTTP/1.1 400", ""}},
		{"origin-form request", "GET / HTTP/1.1\r\nHost: api.test\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"https in absolute form", "GET https://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"bad absolute-form host", "GET http://a..b/ HTTP/1.1\r\nHost: a..b\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT bad name", "CONNECT bad_host!:443 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT no port", "CONNECT api.test HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT port 0", "CONNECT api.test:0 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT port 65536", "CONNECT api.test:65536 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT port name", "CONNECT api.test:https HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT zone", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT leading hyphen", "CONNECT -api.test:443 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT path", "CONNECT api.test:443/x HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT empty", "CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"CONNECT userinfo", "CONNECT u@api.test:443 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"unknown method, origin-form", "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"HTTP/2 preface in the clear", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", []string{"HTTP/1.1 4", ""}},
	}
	client := e.client(t, false)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := e.rawProxy(t, []byte(tc.send))
			t.Logf("%q", shorten(got))
			ok := false
			for _, w := range tc.want {
				ok = ok || w == "" && got == "" || w != "" && strings.HasPrefix(got, w)
			}
			if !ok {
				t.Errorf("got %q, want one of %q", shorten(got), tc.want)
			}
			if strings.HasPrefix(got, "HTTP/1.1 400") && !strings.Contains(got, "banger secrets proxy: ") && !strings.Contains(got, "400 Bad Request") {
				t.Errorf("a 400 without a reason: %q", shorten(got))
			}
			resp, err := client.Get("https://api.test/after")
			if err != nil {
				t.Fatalf("the proxy stopped serving: %v", err)
			}
			resp.Body.Close()
		})
	}
}

func shorten(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// Inside intercepted TLS the same bounds hold: a 100 KiB header is a 431,
// and a CONNECT is not passed on.
func TestHostileInsideTLS(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	for _, h2 := range []bool{false, true} {
		req, _ := http.NewRequest("GET", "https://api.test/", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 100<<10))
		resp, err := e.client(t, h2).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("h2 %v: a 100 KiB header got %d", h2, resp.StatusCode)
			}
		}
	}
	before := e.api.count()

	tc := e.dialTLS(t, "api.test", false)
	io.WriteString(tc, "CONNECT elsewhere.test:443 HTTP/1.1\r\nHost: elsewhere.test:443\r\n\r\n")
	buf := make([]byte, 12)
	io.ReadFull(tc, buf)
	if string(buf) != "HTTP/1.1 405" {
		t.Errorf("CONNECT inside TLS: %q", buf)
	}
	if e.api.count() != before {
		t.Error("a bad request inside TLS reached the server")
	}
}

// dialTLS opens an intercepted connection to host by hand. With early
// set, the ClientHello goes in the same write as the CONNECT, before the
// proxy's answer: the proxy must not lose what it read past the request.
func (e *env) dialTLS(t testing.TB, host string, early bool) *tls.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	connect := fmt.Sprintf("CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	ec := &earlyConn{Conn: c, skip: len(connectOK)}
	if early {
		ec.prefix = []byte(connect)
	} else {
		io.WriteString(c, connect)
		buf := make([]byte, len(connectOK))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != connectOK {
			t.Fatalf("CONNECT: %q %v", buf, err)
		}
		ec.skip = 0
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.p.CACertPEM())
	tc := tls.Client(ec, &tls.Config{ServerName: host, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// earlyConn writes prefix with its first write and drops the first skip
// bytes it reads (the proxy's CONNECT answer).
type earlyConn struct {
	net.Conn
	prefix []byte
	skip   int
}

func (c *earlyConn) Write(b []byte) (int, error) {
	if c.prefix != nil {
		p := append(c.prefix, b...)
		c.prefix = nil
		if _, err := c.Conn.Write(p); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *earlyConn) Read(b []byte) (int, error) {
	for c.skip > 0 {
		n, err := c.Conn.Read(b[:min(len(b), c.skip)])
		c.skip -= n
		if err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

// A ClientHello sent before the CONNECT's answer is not lost.
func TestEarlyClientHello(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	tc := e.dialTLS(t, "api.test", true)
	fmt.Fprintf(tc, "GET /early HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", s.gh.Placeholder)
	b, _ := io.ReadAll(tc)
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("got %q", b)
	}
	if got := e.api.last(t).Header.Get("Authorization"); got != "Bearer "+ghValue {
		t.Errorf("the server got %q", got)
	}
}

// Beyond 512 guest connections at once, the next is closed at once.
func TestConnectionLimit(t *testing.T) {
	e := newEnv(t)
	var ends []net.Conn
	defer func() {
		for _, c := range ends {
			c.Close()
		}
	}()
	for range maxConns {
		a, b := net.Pipe()
		ends = append(ends, a)
		go e.p.ServeConn(context.Background(), b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.p.mu.RLock()
		n := len(e.p.conns)
		e.p.mu.RUnlock()
		if n == maxConns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections served, want %d", n, maxConns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { e.p.ServeConn(context.Background(), b); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection 513 was served")
	}
	a.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err != io.EOF && err != io.ErrClosedPipe {
		t.Errorf("connection 513: %v, want it closed", err)
	}
	// One ends, and room is made.
	ends[0].Close()
	ends = ends[1:]
	if err := waitFor(func() bool {
		e.p.mu.RLock()
		defer e.p.mu.RUnlock()
		return len(e.p.conns) < maxConns
	}); err != nil {
		t.Fatal("a closed connection still counts")
	}
}

func waitFor(f func() bool) error {
	for range 500 {
		if f() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("timed out")
}
