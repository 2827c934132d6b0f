package secretproxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// No value reaches a log line, an event or a response the proxy writes,
// on the paths that work and on those that fail.
func TestNoValueLeaks(t *testing.T) {
	s := newTestSecrets(t)
	leaky := Secret{Name: "leaky", Value: ghValue, Placeholder: mustPlaceholder(t, ghValue), Hosts: []string{"leaky.test"}}
	e := newEnv(t, append(s.all(), leaky)...)
	values := []string{ghValue, npmValue, wildValue, evilValue}
	var bodies []string
	do := func(client *http.Client, url string, ph string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+ph)
		req.SetBasicAuth("x", ph)
		req.Header.Set("X-Api-Key", ph)
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies = append(bodies, fmt.Sprint(resp.Header), string(b))
	}
	for _, h2 := range []bool{false, true} {
		client := e.client(t, h2)
		do(client, "https://api.test/ok", s.gh.Placeholder)
		do(client, "https://api.test/echo", s.gh.Placeholder)
		do(client, "https://api.test/hangup", s.gh.Placeholder)
		do(client, "https://evil.test/", s.evil.Placeholder)
		do(client, "https://down.test/", s.evil.Placeholder)
		do(client, "https://leaky.test/", leaky.Placeholder)
		do(client, "http://plain.test/", s.gh.Placeholder)
		do(client, "https://api.test/?q="+s.npm.Placeholder, s.npm.Placeholder)
	}
	// A guest that does not trust the CA: the handshake fails on both sides.
	distrust := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(e.proxyURL), TLSClientConfig: &tls.Config{}}}
	if _, err := distrust.Get("https://api.test/"); err == nil {
		t.Error("a guest without the CA got through")
	}
	e.rawProxy(t, []byte("GET http://plain.test/ HTTP/1.1\r\nX: "+strings.Repeat("y", 70<<10)+"\r\n\r\n"))
	e.rawProxy(t, []byte("\x16\x03\x01garbage\r\n\r\n"))

	logs := e.logs.String()
	events := fmt.Sprintf("%+v", e.takeEvents())
	for _, v := range values {
		if strings.Contains(logs, v) {
			t.Errorf("a value in the logs:\n%s", logs)
		}
		if strings.Contains(events, v) {
			t.Errorf("a value in the events: %s", events)
		}
		for _, b := range bodies {
			if strings.Contains(b, v) {
				t.Errorf("a value in a response: %s", b)
			}
		}
	}
	for _, want := range []string{"does not verify", "cannot reach it", "TLS handshake with the guest failed", "[secret gh]"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %q:\n%s", want, logs)
		}
	}
	if !strings.Contains(events, "use") || !strings.Contains(events, "attempt") {
		t.Errorf("events: %s", events)
	}
}
