package secretproxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Request bodies stream through to the server, over either protocol.
func TestRequestBody(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	const size = 8 << 20
	for _, h2 := range []bool{false, true} {
		pr, pw := io.Pipe()
		go func() {
			chunk := make([]byte, 64<<10)
			for i := 0; i < size/len(chunk); i++ {
				pw.Write(chunk)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", "https://api.test/count", pr)
		req.Header.Set("Authorization", "Bearer "+s.gh.Placeholder)
		resp, err := e.client(t, h2).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != fmt.Sprint(size) {
			t.Errorf("h2 %v: the server counted %q bytes, want %d", h2, b, size)
		}
		if got := e.api.last(t).Header.Get("Authorization"); got != "Bearer "+ghValue {
			t.Errorf("h2 %v: Authorization %q", h2, got)
		}
	}
}

// An Upgrade (WebSocket's handshake) inside intercepted TLS reaches the
// server over HTTP/1.1, with the value, and the connection carries bytes
// both ways after the 101.
func TestUpgrade(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	tc := e.dialTLS(t, "api.test", false)
	fmt.Fprintf(tc, "GET /upgrade HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer %s\r\n\r\n", s.gh.Placeholder)
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(tc, "hello\n")
	line, _ := br.ReadString('\n')
	if line != "echo hello\n" {
		t.Errorf("after the upgrade: %q", line)
	}
	got := e.api.last(t)
	if got.Header.Get("Authorization") != "Bearer "+ghValue || !strings.EqualFold(got.Header.Get("Upgrade"), "websocket") {
		t.Errorf("the server got %v", got.Header)
	}
}
