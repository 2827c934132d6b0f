package secretproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// newTransport is the proxy's one way out: every upstream connection goes
// through cfg.Dial (the VM's egress policy), never through the host's
// proxy variables, and TLS is verified against cfg.RootCAs with the URL's
// host, which is always the guest's CONNECT target.
func (p *Proxy) newTransport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			c, err := p.cfg.Dial(ctx, host, port)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		TLSClientConfig:       &tls.Config{RootCAs: p.cfg.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   handshakeTimeout,
		ResponseHeaderTimeout: tunnelIdle,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		// A server's headers are not the guest's, but are bounded all the same.
		MaxResponseHeaderBytes: 1 << 20,
		// Frames of up to 1 MiB rather than HTTP/2's 16 KiB: a download
		// through the proxy ran at a third of a direct one's speed with
		// 16 KiB frames, half with these (bench/secretproxy.sh).
		HTTP2: &http.HTTP2Config{MaxReadFrameSize: 1 << 20},
	}
}

// dialError marks a failure of cfg.Dial, whose text is the caller's and
// says why (the egress policy, a refused port).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// forwarder serves the requests inside a guest's intercepted TLS to host,
// all of them to host:port whatever their Host header says: a guest must
// not be able to steer a value, by Host or :authority, to another site
// behind the same front (domain fronting).
func (p *Proxy) forwarder(host, port string) http.Handler {
	authority := hostPort(host, port, "443")
	rp := p.reverseProxy(host, func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "https"
		pr.Out.URL.Host = authority
		pr.Out.URL.User = nil
		pr.Out.Host = authority
		p.rewrite(pr.In, pr.Out.Header, host, true)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			refuse(w, http.StatusMethodNotAllowed, "connect-in-tunnel", host+": CONNECT inside an intercepted connection is not forwarded")
			return
		}
		rp.ServeHTTP(w, r)
	})
}

func (p *Proxy) reverseProxy(host string, rewrite func(*httputil.ProxyRequest)) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: p.transport,
		ModifyResponse: func(r *http.Response) error {
			p.scrubHeaders(r.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.upstreamError(w, r, host, err)
		},
		ErrorLog:   p.errLog,
		BufferPool: bytesPool{},
	}
}

// upstreamError tells the guest why its request got no answer. r is the
// outgoing request, values and all: only its context is looked at.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, host string, err error) {
	if r.Context().Err() != nil {
		// The guest went away, or the proxy closed: nobody to tell.
		return
	}
	kind, msg := describe(err)
	msg = p.scrub(msg)
	p.log.Info("upstream request failed", "host", host, "err", msg)
	refuse(w, http.StatusBadGateway, kind, host+": "+msg)
}

// describe puts an upstream failure in words a person reading a tool's
// output can act on.
func describe(err error) (kind, msg string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		// Its text would repeat the URL, query and all.
		err = ue.Err
	}
	var (
		cve *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		de  *dialError
	)
	switch {
	case errors.As(err, &cve):
		return "upstream-certificate", "the server's certificate does not verify: " + cve.Err.Error()
	case errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return "upstream-certificate", "the server's certificate does not verify: " + err.Error()
	case errors.As(err, &de):
		return "upstream-unreachable", "cannot reach it: " + de.err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "upstream-timeout", "no answer in time: " + err.Error()
	}
	return "upstream-failed", fmt.Sprintf("the request failed: %v", err)
}

// bytesPool lends ReverseProxy its copy buffers, so that a long download
// does not allocate one per request.
type bytesPool struct{}

func (bytesPool) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (bytesPool) Put(b []byte) { bufPool.Put(&b) }
