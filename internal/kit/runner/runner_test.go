package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExec(t *testing.T) {
	out, err := Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo out; echo oops >&2"}})
	if err != nil || string(out) != "out\n" {
		t.Fatalf("out %q, err %v", out, err)
	}
	_, err = Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo 'E: Unable to locate package x' >&2; exit 100"}})
	if err == nil || !strings.Contains(err.Error(), "Unable to locate package x") || !strings.Contains(err.Error(), "exit status 100") {
		t.Fatalf("failure error %v lacks stderr and status", err)
	}
	out, err = Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "pwd; echo $FOO"}, Dir: "/", Env: []string{"FOO=bar"}})
	if err != nil || string(out) != "/\nbar\n" {
		t.Fatalf("dir/env: %q %v", out, err)
	}
}

func TestRecorder(t *testing.T) {
	r := &Recorder{}
	r.Run(context.Background(), Cmd{Name: "ip", Args: []string{"link", "add", "br0"}})
	if got := r.Calls(); len(got) != 1 || got[0] != "ip link add br0" {
		t.Fatalf("calls = %v", got)
	}
	if _, err := r.LookPath("qemu"); err == nil {
		t.Fatal("unknown program found")
	}
}

// TestCancelEndsWhatTheHelperStarted: a helper's own children die with
// it; mmdebstrap's forked workers did not.
func TestCancelEndsWhatTheHelperStarted(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The grandchild records its PID as this host sees it (/proc is the
	// host's), then becomes a long sleep.
	inner := `read -r pid rest < /proc/self/stat; echo $pid > ` + pidFile + `; exec sleep 300 >/dev/null 2>&1`
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Exec{}.Run(ctx, Cmd{Name: "sh", Args: []string{"-c", `sh -c '` + inner + `' & wait`}})
		done <- err
	}()
	var pid int
	for deadline := time.Now().Add(5 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid == 0 {
		t.Fatal("the grandchild never started")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a canceled command reported success")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its cancel")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the helper's child (pid %d) outlived its cancel", pid)
		}
	}
}

func TestGuestTreeUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, tt := range []struct {
		guest bool
		want  string
	}{{false, "0077"}, {true, "0022"}} {
		out, err := Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "umask; echo \"$1\"", "sh", "arg with 'quotes'"}, GuestTree: tt.guest})
		if err != nil || string(out) != tt.want+"\narg with 'quotes'\n" {
			t.Errorf("GuestTree %v: %q, %v; want umask %s and the argument intact", tt.guest, out, err, tt.want)
		}
	}
}
