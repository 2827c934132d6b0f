// Package runner is the one seam through which banger runs external
// programs (apt-get, mkfs.ext4, qemu, ip, nft...). Production code uses
// Exec; unit tests use a Recorder to see and fake every call.
package runner

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Cmd is one program invocation.
type Cmd struct {
	Name string
	Args []string
	Dir  string
	Env  []string // extra KEY=VALUE pairs added to the daemon's environment
	// GuestTree says the command builds files for a guest, whose modes
	// must be the usual ones: it runs with umask 022, not the daemon's
	// 077, which keeps the state directory private.
	GuestTree bool
}

// String renders the command as a shell-like line, for logs and tests.
func (c Cmd) String() string {
	return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " "))
}

// Runner runs programs.
type Runner interface {
	// Run runs cmd to completion and returns its standard output. A
	// non-zero exit is an error that carries the program's standard error.
	Run(ctx context.Context, cmd Cmd) ([]byte, error)
	// LookPath reports where a program is, like exec.LookPath.
	LookPath(name string) (string, error)
}

// Exec runs real programs.
type Exec struct{}

var _ Runner = Exec{}

// Run implements Runner.
func (Exec) Run(ctx context.Context, c Cmd) ([]byte, error) {
	name, args := c.Name, c.Args
	if c.GuestTree {
		name, args = "/bin/sh", append([]string{"-c", `umask 022 && exec "$0" "$@"`, c.Name}, c.Args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = sysProcAttr()
	if cmd.SysProcAttr.Setpgid {
		// A cancel ends the helper's whole process group.
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
	if len(c.Env) > 0 {
		cmd.Env = append(cmd.Environ(), c.Env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		if msg != "" {
			return stdout.Bytes(), fmt.Errorf("%s: %w: %s", c.String(), err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w", c.String(), err)
	}
	return stdout.Bytes(), nil
}

// sysProcAttr makes a helper (apt-get, mmdebstrap, e2fsprogs) die with
// the daemon, so that a crashed daemon leaves nothing writing into its
// staging area; and with the helper everything it started: as root it
// is the init of a PID namespace of its own, and the kernel ends the
// namespace's every process when its init dies (by the daemon's death,
// or a cancel's kill). mmdebstrap forks workers that a signal to it alone
// would leave running. A daemon without root cannot make the namespace:
// its helpers lead a process group, which a cancel kills whole.
// (VMM processes, which must outlive the daemon, are not started here.)
func sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		a.Cloneflags = syscall.CLONE_NEWPID
	} else {
		a.Setpgid = true
	}
	return a
}

// LookPath implements Runner.
func (Exec) LookPath(name string) (string, error) { return exec.LookPath(name) }
