package secretproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
)

// The benchmarks compare a guest's client going through the proxy (its
// TLS terminated, the placeholder replaced, a second TLS connection to
// the server) with the same client going straight to the server with the
// real value. "tunnel" is the proxy's other path, a CONNECT to a host no
// secret names, spliced: the cost of the extra hop alone, which no proxy
// can go under. All in one process on 127.0.0.1: the guest's own network
// path to the proxy is not in them. bench/secretproxy.sh prints the
// ratios.

// benchEnv is newEnv without the recording the tests need.
func benchEnv(b *testing.B) (*env, testSecrets) {
	s := newTestSecrets(b)
	e := newEnv(b, s.gh)
	e.p.cfg.Record = func(Event) {}
	e.api.quiet.Store(true)
	return e, s
}

// directClient reaches the server itself, whatever the URL's host, as
// the guest's client would without the proxy.
func (e *env) directClient(b *testing.B) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	addr := e.api.addr()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func get(b *testing.B, client *http.Client, url, token string) int64 {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("%s: %d, %v", url, resp.StatusCode, err)
	}
	return n
}

// BenchmarkSmallHTTPS: one op is 100 small GETs, one after another, on
// kept-alive connections.
func BenchmarkSmallHTTPS(b *testing.B) {
	e, s := benchEnv(b)
	run := func(b *testing.B, client *http.Client, host, token string) {
		url := "https://" + host + "/small"
		get(b, client, url, token) // the connections, outside the timing
		for b.Loop() {
			for range 100 {
				get(b, client, url, token)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, e.directClient(b), "api.test", ghValue) })
	b.Run("proxy", func(b *testing.B) { run(b, e.client(b, false), "api.test", s.gh.Placeholder) })
	b.Run("tunnel", func(b *testing.B) { run(b, e.client(b, false), "free.test", ghValue) })
}

// BenchmarkDownload: one op is a 64 MiB response body.
func BenchmarkDownload(b *testing.B) {
	e, s := benchEnv(b)
	run := func(b *testing.B, client *http.Client, host, token string) {
		get(b, client, "https://"+host+"/small", token)
		b.SetBytes(bigSize)
		for b.Loop() {
			if n := get(b, client, "https://"+host+"/big", token); n != bigSize {
				b.Fatalf("%d bytes", n)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, e.directClient(b), "api.test", ghValue) })
	b.Run("proxy", func(b *testing.B) { run(b, e.client(b, false), "api.test", s.gh.Placeholder) })
	b.Run("tunnel", func(b *testing.B) { run(b, e.client(b, false), "free.test", ghValue) })
}
