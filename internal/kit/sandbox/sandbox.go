// Package sandbox runs a piece of banger's own code over hostile input
// (a disk a guest wrote) in a process that can do nothing else: it runs
// as a uid of its own with no groups, in new network, IPC, UTS and PID
// namespaces (no network at all), with no_new_privs, bounded memory,
// time, file size and descriptors, and a seccomp filter that refuses
// every system call but the few the Go runtime and reading and writing
// its inherited descriptors need: it cannot open a file, make a socket,
// exec a program or make a namespace. Its only way out is the
// descriptors it was handed.
//
// The parent side is Command; the child calls Enter before it reads
// anything hostile. The child is this same binary, started through
// /proc/self/exe (so the binary's directory need not be reachable by the
// sandbox's uid) with Arg as its first argument.
package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Arg is the first argument that makes the banger binary a sandboxed
// helper instead of the CLI.
const Arg = "__sandboxed"

// Spec says how a sandboxed process runs.
type Spec struct {
	// UID and GID the process runs as, when the caller is root; an
	// unprivileged caller's process keeps its own (it has nothing more to
	// give up) and gets no new namespaces.
	UID, GID int
	// Memory bounds the process's address space, in bytes.
	Memory uint64
	// Timeout ends the process (SIGKILL) if it has not exited by then.
	Timeout time.Duration
}

// Command returns the command that runs this binary's sandboxed helper
// entry with args. The caller sets its descriptors (Stdin, Stdout,
// Stderr, ExtraFiles) and starts it.
func Command(ctx context.Context, s Spec, entry string, args ...string) (*exec.Cmd, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	cmd := exec.CommandContext(ctx, "/proc/self/exe", append([]string{Arg, entry}, args...)...)
	cmd.Env = []string{"GOMAXPROCS=1", fmt.Sprintf("BANGER_SANDBOX_MEMORY=%d", s.Memory)}
	cmd.Dir = "/"
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if os.Geteuid() == 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.GID), Groups: []uint32{}}
		attr.Cloneflags = unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWNS
	}
	cmd.SysProcAttr = attr
	cmd.WaitDelay = time.Second
	return cmd, cancel
}

// Enter locks the calling process down: no new privileges, the bounds
// of Spec (read from the environment Command set), then the seccomp
// filter, on every thread. Nothing hostile may be read before it
// returns nil.
func Enter() error {
	// no_new_privs is a property of one thread, and seccomp refuses a
	// filter (EACCES) to a thread without it: the prctl and the seccomp
	// call must run on the same thread, which the Go scheduler does not
	// promise unless the goroutine is locked to it. TSYNC then carries
	// no_new_privs to the runtime's other threads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	var mem uint64
	fmt.Sscan(os.Getenv("BANGER_SANDBOX_MEMORY"), &mem)
	if mem == 0 {
		mem = 2 << 30 // the Go runtime's reservations need more than 1 GiB of addresses
	}
	limits := []struct {
		res int
		max uint64
	}{
		{unix.RLIMIT_AS, mem},
		{unix.RLIMIT_FSIZE, 0}, // writes to a pipe are not bounded by it; to a file they are
		{unix.RLIMIT_NOFILE, 16},
		{unix.RLIMIT_CORE, 0},
		{unix.RLIMIT_MEMLOCK, 0},
	}
	for _, l := range limits {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.max, Max: l.max}); err != nil {
			return fmt.Errorf("limit %d to %d: %w", l.res, l.max, err)
		}
	}
	return installFilter()
}
