package secretproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"
)

// guest serves the requests of one guest connection.
type guest struct {
	p   *Proxy
	ctx context.Context
}

func (g *guest) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		g.connect(w, r)
	case !r.URL.IsAbs():
		refuse(w, http.StatusBadRequest, "not-a-proxy-request",
			"this is an HTTP proxy: set HTTP_PROXY/HTTPS_PROXY to it rather than sending it requests for itself")
	case r.URL.Scheme != "http":
		refuse(w, http.StatusBadRequest, "bad-scheme",
			"only http:// URLs are forwarded as they are; https:// goes through CONNECT")
	default:
		g.plain(w, r)
	}
}

// connect answers CONNECT: a bound host's TLS is terminated here, any
// other host's is tunnelled untouched.
func (g *guest) connect(w http.ResponseWriter, r *http.Request) {
	// The raw target, not r.Host: net/http would make "u@h:1/x" into h:1.
	host, port, err := splitTarget(r.RequestURI, "")
	if err != nil {
		refuse(w, http.StatusBadRequest, "bad-target", fmt.Sprintf("CONNECT %s: %v", quoteShort(r.RequestURI), err))
		return
	}
	if g.p.intercepts(host) {
		c, pre, err := hijack(w)
		if err != nil {
			g.p.log.Debug("CONNECT: taking over the connection", "host", host, "err", err)
			return
		}
		defer c.Close()
		if _, err := io.WriteString(c, connectOK); err != nil {
			return
		}
		g.intercept(newWrappedConn(c, pre), host, port)
		return
	}

	dctx, cancel := context.WithTimeout(g.ctx, dialTimeout)
	up, err := g.p.cfg.Dial(dctx, host, port)
	cancel()
	if err != nil {
		msg := g.p.scrub(err.Error())
		g.p.log.Info("CONNECT: cannot reach the target", "host", host, "port", port, "err", msg)
		refuse(w, http.StatusBadGateway, "upstream-unreachable", fmt.Sprintf("%s: cannot reach it: %s", host, msg))
		return
	}
	c, pre, err := hijack(w)
	if err != nil {
		up.Close()
		g.p.log.Debug("CONNECT: taking over the connection", "host", host, "err", err)
		return
	}
	if _, err := io.WriteString(c, connectOK); err != nil {
		c.Close()
		up.Close()
		return
	}
	splice(newWrappedConn(c, pre), up, tunnelIdle)
}

const connectOK = "HTTP/1.1 200 Connection established\r\n\r\n"

// intercept terminates the guest's TLS to host with a leaf of the VM's CA
// and serves the requests inside it, HTTP/1.1 or HTTP/2 as the guest's
// client chooses, each forwarded to host:port.
func (g *guest) intercept(c *wrappedConn, host, port string) {
	leaf, err := g.p.ca.leaf(host, time.Now())
	if err != nil {
		g.p.log.Debug("TLS for the guest: no certificate", "host", host, "err", err)
		return
	}
	tc := tls.Server(c, &tls.Config{
		// Whatever name the guest asks for, this tunnel leads to host.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return leaf, nil },
		NextProtos:     []string{"h2", "http/1.1"},
		MinVersion:     tls.VersionTLS12,
	})
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	hctx, cancel := context.WithTimeout(g.ctx, handshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		g.p.log.Debug("TLS handshake with the guest failed", "host", host, "err", g.p.scrub(err.Error()))
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})

	srv := g.p.server(g.ctx, g.p.forwarder(host, port), true)
	// The http.Server must be given the *tls.Conn itself to find HTTP/2
	// and the TLS state, so its closing is noticed beneath it, on c.
	_ = srv.Serve(&oneConnListener{c: tc, done: c.done})
}

// plain forwards an absolute-form http:// request as it is: no value is
// ever sent without TLS, whatever host it is for.
func (g *guest) plain(w http.ResponseWriter, r *http.Request) {
	host, port, err := splitTarget(r.URL.Host, "80")
	if err != nil {
		refuse(w, http.StatusBadRequest, "bad-target", fmt.Sprintf("%s: %v", quoteShort(r.URL.Host), err))
		return
	}
	authority := hostPort(host, port, "80")
	rp := g.p.reverseProxy(host, func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = authority
		pr.Out.Host = authority
		g.p.rewrite(pr.In, pr.Out.Header, host, false)
	})
	rp.ServeHTTP(w, r)
}

// refuse answers the guest with the proxy's own error: plain text saying
// what happened, and X-Banger-Proxy-Error naming it, so that a tool's
// output shows the reason rather than a bare status.
func refuse(w http.ResponseWriter, code int, kind, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Banger-Proxy-Error", kind)
	w.WriteHeader(code)
	io.WriteString(w, "banger secrets proxy: "+msg+"\n")
}

// quoteShort quotes a guest-supplied string for a message, cut short: it
// may be anything, of any length.
func quoteShort(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return strconv.Quote(s)
}

// hijack takes the connection from net/http, with whatever the guest sent
// after its request (a TLS ClientHello, often, in the same packet).
func hijack(w http.ResponseWriter) (net.Conn, []byte, error) {
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var pre []byte
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		pre = append([]byte(nil), b...)
	}
	c.SetDeadline(time.Time{})
	return c, pre, nil
}
