package qemu

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeMonitor answers like qemu's QMP: a greeting, then one reply per
// command, with an asynchronous event slipped in before the last.
func fakeMonitor(t *testing.T, replies map[string]string) string {
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			for cmd, rep := range replies {
				if strings.Contains(sc.Text(), `"`+cmd+`"`) {
					c.Write([]byte(`{"event": "RESUME", "timestamp": {}}` + "\n" + rep + "\n"))
				}
			}
		}
	}()
	return sock
}

func TestQMP(t *testing.T) {
	sock := fakeMonitor(t, map[string]string{
		"qmp_capabilities": `{"return": {}}`,
		"query-status":     `{"return": {"status": "running", "running": true}}`,
		"bogus":            `{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}}`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ret, err := QMP(ctx, sock, "query-status")
	if err != nil || !strings.Contains(string(ret), `"running"`) {
		t.Fatalf("query-status = %s, %v", ret, err)
	}
	sock = fakeMonitor(t, map[string]string{"qmp_capabilities": `{"return": {}}`, "bogus": `{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}}`})
	if _, err := QMP(ctx, sock, "bogus"); err == nil || !strings.Contains(err.Error(), "has not been found") {
		t.Fatalf("bogus command: %v", err)
	}
	if _, err := QMP(ctx, filepath.Join(t.TempDir(), "none.sock"), "query-status"); err == nil {
		t.Fatal("QMP on a missing socket succeeded")
	}
}
