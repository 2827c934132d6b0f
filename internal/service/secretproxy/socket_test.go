package secretproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

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
	p, err := New("v", Config{Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", up.Addr().String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	guest, host := net.Pipe()
	go p.ServeConn(context.Background(), noDeadlines{host})
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

// A guest that opens connections without deadlines and sends nothing
// does not hold the proxy's socket pairs: past the limit they are closed
// at once, and every one is closed when the proxy closes.
func TestSilentChannelsAreBounded(t *testing.T) {
	p, err := New("v", Config{Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") }})
	if err != nil {
		t.Fatal(err)
	}
	var guests []net.Conn
	for range maxConns + 5 {
		g, h := net.Pipe()
		guests = append(guests, g)
		go p.ServeConn(context.Background(), noDeadlines{h})
	}
	closed := func(g net.Conn) bool {
		g.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := g.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
	}
	time.Sleep(300 * time.Millisecond)
	over := 0
	for _, g := range guests {
		g.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := g.Read(make([]byte, 1)); errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
			over++
		}
	}
	if over < 5 {
		t.Errorf("%d of %d silent connections closed at once, want the %d past the limit", over, len(guests), 5)
	}
	p.Close()
	for i, g := range guests {
		if !closed(g) {
			t.Fatalf("connection %d still open after Close", i)
		}
	}
}
