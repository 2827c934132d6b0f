package vm

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/vmm"
)

// readFrom returns a file's content from offset on.
func readFrom(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	return string(b), err
}

// readyIn says whether a boot's console shows the agent ready, and with
// which host key.
func readyIn(console string) (hostKey string, ok bool) {
	if !strings.Contains(console, guestproto.ReadyMarker) {
		return "", false
	}
	return guestproto.HostKeyFromConsole(console), true
}

// Tail returns the last n lines of s, for error messages.
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "…"
		}
		lines[i] = "  | " + strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, "\n")
}

// waitReady waits for the agent's ready line on this boot's console. It
// gives up when the VMM exits (a kernel panic ends it: panic=-1 and
// -no-reboot), when timeout passes, or when ctx ends; the error carries
// the console's last lines.
func waitReady(ctx context.Context, name, path string, offset int64, proc vmm.Process, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Every 10 ms, reading only what the guest printed since: the wait
	// adds little to a boot and costs the host next to nothing.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var con strings.Builder
	read := func() {
		more, err := readFrom(path, offset)
		if err == nil {
			con.WriteString(more)
			offset += int64(len(more))
		}
	}
	for {
		read()
		if key, ok := readyIn(con.String()); ok {
			return key, nil
		}
		if !proc.Alive() {
			// Read once more: the line may have landed as it exited.
			read()
			return "", fmt.Errorf("vm %s: the guest stopped before it was ready; its console's last lines:\n%s", name, orNothing(Tail(con.String(), 25)))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", fmt.Errorf("vm %s: the guest was not ready after %s (raise it with --timeout, or ready_timeout in the config); its console's last lines:\n%s", name, timeout, orNothing(Tail(con.String(), 25)))
		case <-tick.C:
		}
	}
}

func orNothing(s string) string {
	if strings.TrimSpace(strings.ReplaceAll(s, "|", "")) == "" {
		return "  (the console is empty)"
	}
	return s
}
