// Package secretproxy is a VM's HTTP(S) egress proxy that keeps secrets
// out of the guest. The guest holds random placeholders; its proxy
// variables point at this proxy, which tunnels TLS untouched to every host
// but those a secret is bound to. For those it terminates TLS with a
// per-VM CA the guest trusts, puts the real values in place of the
// placeholders in the request's headers, and forwards the request to the
// real server over TLS it verifies. Plain HTTP is forwarded without any
// replacement, so a value never leaves in the clear, and a placeholder sent
// anywhere a value may not go is recorded as an attempt.
//
// Every byte from a guest connection is the guest's, and the guest may be
// hostile: headers, connections and idle time are bounded, and values
// never reach a log line, an event, an error or a response.
package secretproxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	maxConns = 512
	// maxHeaderBytes bounds a request's line and headers; net/http adds
	// 4 KiB of slack to MaxHeaderBytes, taken off here.
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	tunnelIdle        = 10 * time.Minute
	dialTimeout       = 30 * time.Second
	handshakeTimeout  = 30 * time.Second
	// maxStreams bounds one guest HTTP/2 connection's concurrent requests.
	maxStreams = 100

	minPlaceholder = 16
	minValue       = 8
)

// Secret is one secret lent to one VM.
type Secret struct {
	Name        string
	Value       string   // the real value: never logged, never in an error
	Placeholder string   // what the guest holds
	Hosts       []string // exact lower-case DNS names, or "*.example.com" for subdomains
}

// Event is one thing worth recording: a secret used, or a placeholder sent
// where it is not bound.
type Event struct {
	Time   time.Time
	Secret string // the secret's name
	Host   string // the request's host (no port)
	Method string
	Path   string // URL path only, no query (queries may carry tokens)
	Kind   string // "use" or "attempt"
	Why    string // for attempts: "not bound to this host", "plain http (no TLS)", "in the URL"
}

// Config is what a proxy needs from its caller.
type Config struct {
	// Dial reaches host:port for this VM (the caller applies the VM's egress
	// policy and refuses the host's own addresses). Used for every upstream connection.
	Dial func(ctx context.Context, host, port string) (net.Conn, error)
	// RootCAs verifies real servers' certificates (nil: the system pool).
	RootCAs *x509.CertPool
	// Record is called for every Event (may be nil). Called from many goroutines.
	Record func(Event)
	// Log gets connection-level problems, never values (nil: discard).
	Log *slog.Logger
}

// Proxy is one VM's secrets proxy.
type Proxy struct {
	vm        string
	cfg       Config
	log       *slog.Logger
	errLog    *log.Logger // net/http's own complaints, scrubbed, into log
	ca        *authority
	transport *http.Transport
	// ctx ends with Close, taking every request in flight with it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.RWMutex
	closed  bool
	secrets []secret // replaced whole by Add, never changed in place
	conns   map[*wrappedConn]struct{}
}

// New makes a proxy for one VM with a fresh per-VM CA (ECDSA P-256, name
// "banger VM <vm> secrets CA", valid from an hour ago for 1 year; MaxPathLen
// 0; the private key only in memory).
func New(vm string, cfg Config) (*Proxy, error) {
	if cfg.Dial == nil {
		return nil, errors.New("secretproxy: no Dial")
	}
	ca, err := newAuthority(vm, time.Now())
	if err != nil {
		return nil, fmt.Errorf("secretproxy: CA for VM %s: %w", vm, err)
	}
	p := &Proxy{vm: vm, cfg: cfg, log: cfg.Log, ca: ca, conns: make(map[*wrappedConn]struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("vm", vm)
	p.errLog = log.New(logWriter{p}, "", 0)
	p.transport = p.newTransport()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// CACertPEM is the CA certificate the guest must trust.
func (p *Proxy) CACertPEM() []byte {
	return append([]byte(nil), p.ca.certPEM...)
}

// Add adds or replaces (by Name) secrets. Safe concurrently with serving.
// A secret without a name, with a placeholder under 16 bytes (it would
// match by accident) or a value under 8 bytes (too short to keep out of
// logs by replacing it) is left out, and logged by name.
func (p *Proxy) Add(secrets ...Secret) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	next := append([]secret(nil), p.secrets...)
	for _, s := range secrets {
		if s.Name == "" || len(s.Placeholder) < minPlaceholder || len(s.Value) < minValue || strings.Contains(s.Placeholder, s.Value) {
			p.log.Warn("secret left out: it needs a name, a placeholder of 16 bytes or more, and a value of 8 bytes or more that the placeholder does not contain", "secret", s.Name)
			continue
		}
		sec := secret{name: s.Name, value: s.Value, placeholder: s.Placeholder}
		for _, h := range s.Hosts {
			if h = normalizePattern(h); h != "" {
				sec.hosts = append(sec.hosts, h)
			}
		}
		i := 0
		for ; i < len(next) && next[i].name != s.Name; i++ {
		}
		if i < len(next) {
			next[i] = sec
		} else {
			next = append(next, sec)
		}
	}
	p.secrets = next
}

// intercepts reports whether TLS to host is terminated here: whether any
// secret is bound to it.
func (p *Proxy) intercepts(host string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for i := range p.secrets {
		if p.secrets[i].boundTo(host) {
			return true
		}
	}
	return false
}

// Close forgets every value, closes every connection being served; later
// ServeConn calls close c at once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.secrets = nil
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.cancel()
	for c := range conns {
		c.Close()
	}
	p.ca.forget()
	p.transport.CloseIdleConnections()
}

// track counts c in, unless the proxy is closed or full.
func (p *Proxy) track(c *wrappedConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= maxConns {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c *wrappedConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// ServeConn serves one guest connection until it ends or the proxy
// closes; it closes c.
func (p *Proxy) ServeConn(ctx context.Context, c net.Conn) {
	if c.SetReadDeadline(time.Time{}) != nil {
		// No deadlines (an SSH channel): served through a socket pair,
		// and c closed with it, or a guest that sends nothing more would
		// hold the pair's copy for good.
		sc, err := socketFor(c)
		if err != nil {
			p.log.Warn("guest connection: socket pair", "err", err)
			c.Close()
			return
		}
		defer c.Close()
		c = sc
	}
	w := newWrappedConn(c, nil)
	if !p.track(w) {
		if !p.isClosed() {
			p.log.Warn("guest connection refused: too many at once", "max", maxConns)
		}
		c.Close()
		return
	}
	defer p.untrack(w)
	defer w.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	defer context.AfterFunc(ctx, func() { w.Close() })()

	g := &guest{p: p, ctx: ctx}
	srv := p.server(ctx, http.HandlerFunc(g.serveHTTP), false)
	// Serve returns once the listener's one connection has closed.
	_ = srv.Serve(&oneConnListener{c: w, done: w.done})
}

func (p *Proxy) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

// server is an http.Server for one guest connection: the proxy-protocol
// one (HTTP/1 only) or one inside intercepted TLS (HTTP/1 and HTTP/2).
func (p *Proxy) server(ctx context.Context, h http.Handler, h2 bool) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(h2)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes - 4<<10,
		ErrorLog:          p.errLog,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		Protocols:         &protos,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
	}
}

// logWriter takes net/http's log lines (TLS handshake failures, malformed
// HTTP/2 frames, panics) to the proxy's logger at debug level: they are
// the guest's doing more often than not.
type logWriter struct{ p *Proxy }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.log.Debug("http: " + w.p.scrub(strings.TrimSpace(string(b))))
	return len(b), nil
}
