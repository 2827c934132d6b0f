package agent

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A port the host asks for on the guest's loopback carries each
// connection back to the host, both ways; it closes with the connection
// that asked; nothing but loopback may be asked for.
func TestRemoteForward(t *testing.T) {
	c, _, _ := serveAgent(t)
	for _, addr := range []string{"0.0.0.0:0", "10.0.2.15:0", "example.com:0"} {
		if ln, err := c.Listen("tcp", addr); err == nil {
			ln.Close()
			t.Errorf("a forward on %s was opened: only loopback may be", addr)
		}
	}
	ln, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if port == 0 {
		t.Fatal("the agent answered no port")
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				b, _ := io.ReadAll(conn)
				io.WriteString(conn, "host got "+string(b))
			}()
		}
	}()
	// The guest's side: a program connects to its loopback.
	g, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(g, "hello")
	g.(*net.TCPConn).CloseWrite()
	g.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(g)
	if err != nil || string(b) != "host got hello" {
		t.Errorf("through the forward: %q, %v", b, err)
	}
	g.Close()
	c.Close()
	// With the connection gone, so is the port.
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		g.Close()
		if time.Now().After(deadline) {
			t.Fatal("the forwarded port outlived the connection that asked for it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(ln.Addr().String(), "127.0.0.1:") {
		t.Errorf("listener address %s", ln.Addr())
	}
}
