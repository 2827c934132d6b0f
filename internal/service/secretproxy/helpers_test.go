package secretproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// seen is one request as a real server received it.
type seen struct {
	Host, URI, Proto string
	Header           http.Header
}

// upstream is a real server: it records what it receives. /big answers
// bigSize bytes; /echo puts the request's Authorization in X-Echo.
type upstream struct {
	srv   *httptest.Server
	quiet atomic.Bool // benchmarks: record nothing
	mu    sync.Mutex
	reqs  []seen
}

const bigSize = 64 << 20

var bigChunk = make([]byte, 1<<20)

func newUpstream(t testing.TB, tlsCert *tls.Certificate) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !u.quiet.Load() {
			u.mu.Lock()
			u.reqs = append(u.reqs, seen{r.Host, r.RequestURI, r.Proto, r.Header.Clone()})
			u.mu.Unlock()
		}
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(bigSize))
			for i := 0; i < bigSize/len(bigChunk); i++ {
				if _, err := w.Write(bigChunk); err != nil {
					return
				}
			}
		case "/echo":
			w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		case "/hangup":
			panic(http.ErrAbortHandler)
		case "/count":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
		case "/upgrade":
			// An echo after a 101, as a WebSocket server would talk.
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			line, _ := brw.ReadString('\n')
			io.WriteString(c, "echo "+line)
		default:
			io.WriteString(w, "ok")
		}
	}))
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsCert != nil {
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*tlsCert}}
		u.srv.EnableHTTP2 = true
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the server received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// lockedBuffer is a log destination written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a proxy with its world: real servers behind names, the guest's
// side on a 127.0.0.1 listener, what it recorded and logged.
type env struct {
	p        *Proxy
	ca       *testkit.CA // the "public" CA
	proxyURL *url.URL
	api      *upstream // api.test, other.test, free.test, *.wild.test, wild.test
	plain    *upstream // plain.test, over http
	evil     *upstream // evil.test, with a certificate of a CA nobody trusts
	logs     *lockedBuffer

	mu     sync.Mutex
	events []Event
}

func newEnv(t testing.TB, secrets ...Secret) *env {
	t.Helper()
	e := &env{ca: testkit.TestCA(t, "test public CA"), logs: &lockedBuffer{}}
	cert := e.ca.MustLeaf(t, "api.test", "other.test", "free.test", "wild.test", "*.wild.test", "down.test")
	e.api = newUpstream(t, &cert)
	e.plain = newUpstream(t, nil)
	evilCert := testkit.TestCA(t, "nobody's CA").MustLeaf(t, "evil.test")
	e.evil = newUpstream(t, &evilCert)

	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	p, err := New("test", Config{
		Dial: func(ctx context.Context, host, port string) (net.Conn, error) {
			addr := e.api.addr()
			switch host {
			case "plain.test":
				addr = e.plain.addr()
			case "evil.test":
				addr = e.evil.addr()
			case "down.test", "nowhere.test":
				return nil, fmt.Errorf("egress policy of VM test refuses %s:%s", host, port)
			case "leaky.test":
				// A caller's error that (wrongly) quotes a value.
				return nil, fmt.Errorf("refused: the token %s is not for %s", ghValue, host)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		RootCAs: roots,
		Record: func(ev Event) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.events = append(e.events, ev)
		},
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Add(secrets...)
	e.p = p
	t.Cleanup(p.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.ServeConn(context.Background(), c)
		}
	}()
	e.proxyURL = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	return e
}

// client is the guest's HTTP client: proxied, trusting the proxy's CA
// (and the public one, for tunnelled hosts).
func (e *env) client(t testing.TB, h2 bool) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(e.p.CACertPEM()) {
		t.Fatal("the CA PEM does not parse")
	}
	roots.AddCert(e.ca.Cert)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(e.proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
	}
	if h2 {
		tr.TLSClientConfig.NextProtos = []string{"h2"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (e *env) takeEvents() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events
	e.events = nil
	return ev
}

// rawProxy sends b on a fresh connection to the proxy and returns what
// comes back before the proxy closes it or 5 s pass.
func (e *env) rawProxy(t testing.TB, b []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", e.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go c.Write(b)
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil || bytes.Contains(out.Bytes(), []byte("\r\n\r\n")) && responseComplete(out.Bytes()) {
			return out.String()
		}
	}
}

// responseComplete reports whether b holds a response's head and the body
// its Content-Length announces.
func responseComplete(b []byte) bool {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return false
	}
	for _, l := range bytes.Split(head, []byte("\r\n")) {
		if k, v, ok := bytes.Cut(l, []byte(": ")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ := strconv.Atoi(string(v))
			return len(body) >= n
		}
	}
	return true
}

func mustPlaceholder(t testing.TB, v string) string {
	t.Helper()
	ph, err := NewPlaceholder(v)
	if err != nil {
		t.Fatal(err)
	}
	return ph
}
