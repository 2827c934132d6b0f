package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain makes the test binary its own sandboxed helper: "escape"
// enters the sandbox and then tries what a compromised parser would.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == Arg && os.Args[2] == "escape" {
		os.Exit(escape())
	}
	os.Exit(m.Run())
}

func escape() int {
	if err := Enter(); err != nil {
		fmt.Println("enter:", err)
		return 1
	}
	try := func(what string, err error) {
		fmt.Printf("%s: %v\n", what, errors.Is(err, unix.EPERM))
	}
	_, err := os.Open("/etc/hostname")
	try("open", err)
	_, err = os.Create(os.Args[3])
	try("create", err)
	_, err = net.Dial("tcp", "127.0.0.1:1")
	try("socket", err)
	err = exec.Command("/bin/true").Run()
	try("exec", err)
	try("unshare", unix.Unshare(unix.CLONE_NEWUSER))
	// clone3 answers ENOSYS, so that a C library falls back to clone; and
	// new threads still start (a cgo build's pthread_create tries clone3
	// first, and died of EPERM).
	_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	fmt.Printf("clone3: %v\n", e == unix.ENOSYS)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // a thread of its own, made after Enter
			time.Sleep(10 * time.Millisecond)
		}()
	}
	wg.Wait()
	fmt.Println("threads: true")
	// What it holds still works: its standard output.
	fmt.Println("stdout: true")
	return 0
}

// A sandboxed helper that tries to get out gets EPERM for every way: no
// file opened or made, no socket, no program, no namespace.
func TestEscapesRefused(t *testing.T) {
	canary := t.TempDir() + "/written"
	cmd, cancel := Command(context.Background(), Spec{UID: 65534, GID: 65534, Memory: 2 << 30, Timeout: 30 * time.Second}, "escape", canary)
	defer cancel()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper: %v: %s", err, out.String())
	}
	for _, what := range []string{"open", "create", "socket", "exec", "unshare", "clone3", "threads", "stdout"} {
		if !strings.Contains(out.String(), what+": true\n") {
			t.Errorf("%s was not refused with EPERM:\n%s", what, out.String())
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("the sandboxed helper made a file")
	}
}

// A helper over its time is ended.
func TestTimeout(t *testing.T) {
	cmd, cancel := Command(context.Background(), Spec{Memory: 1 << 30, Timeout: 200 * time.Millisecond}, "nothing")
	defer cancel()
	cmd.Path, cmd.Args = "/bin/sleep", []string{"sleep", "10"}
	start := time.Now()
	if err := cmd.Run(); err == nil {
		t.Fatal("a helper past its timeout exited cleanly")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ended after %s", d)
	}
}
