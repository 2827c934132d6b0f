package guestssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// IO is where a session's streams go.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY asks for a pseudo-terminal; when Stdin is a terminal it is put
	// in raw mode and its size follows the local window.
	TTY bool
	// Agent, when set, is the local SSH agent's socket, forwarded to the
	// session (ssh -A): commands in the guest sign with its keys, which
	// never leave the host.
	Agent string
	// Env is set in the command's environment (SSH "env" requests, which
	// the guest agent accepts for any name).
	Env map[string]string
	// KillAfter, when set, is how long a command has to end after ctx
	// does and SIGINT was sent: then SIGKILL goes to it and all it started,
	// and the session is closed. Zero waits for the command however long.
	KillAfter time.Duration
}

// Run runs cmd ("" for a login shell) and returns its exit code. A
// command killed by a signal exits 128+N, as in a shell. When ctx ends,
// the command is sent SIGINT, then the session is closed.
func Run(ctx context.Context, c *ssh.Client, cmd string, st IO) (int, error) {
	s, err := c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	if st.Agent != "" {
		if err := agent.ForwardToRemote(c, st.Agent); err != nil {
			return -1, fmt.Errorf("forward the SSH agent: %w", err)
		}
		if err := agent.RequestAgentForwarding(s); err != nil {
			return -1, fmt.Errorf("forward the SSH agent: %w", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(st.Env)) {
		if err := s.Setenv(k, st.Env[k]); err != nil {
			return -1, fmt.Errorf("set %s: %w", k, err)
		}
	}
	s.Stdout, s.Stderr = st.Stdout, st.Stderr
	if st.Stdin != nil {
		stdin, err := s.StdinPipe()
		if err != nil {
			return -1, err
		}
		go func() {
			io.Copy(stdin, st.Stdin)
			stdin.Close()
		}()
	}
	if st.TTY {
		restore, err := setupTTY(s, st.Stdin)
		if err != nil {
			return -1, err
		}
		defer restore()
	}
	if cmd == "" {
		err = s.Shell()
	} else {
		err = s.Start(cmd)
	}
	if err != nil {
		return -1, fmt.Errorf("start %q: %w", cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGINT)
		if st.KillAfter <= 0 {
			err = <-done
			break
		}
		select {
		case err = <-done:
		case <-time.After(st.KillAfter):
			s.Signal(ssh.SIGKILL)
			select {
			case err = <-done:
			case <-time.After(st.KillAfter):
				// The agent kills what a closed session leaves running.
				s.Close()
				return 128 + 9, nil
			}
		}
	}
	return exitCode(err)
}

func exitCode(err error) (int, error) {
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ee.Signal() != "" {
			return 128 + signalNumber(ee.Signal()), nil
		}
		return ee.ExitStatus(), nil
	case errors.Is(err, io.EOF), errors.As(err, new(*ssh.ExitMissingError)):
		return 255, fmt.Errorf("the connection to the guest closed before the command finished")
	}
	return 255, err
}

func signalNumber(name string) int {
	for _, s := range []struct {
		n string
		v syscall.Signal
	}{{"INT", syscall.SIGINT}, {"KILL", syscall.SIGKILL}, {"TERM", syscall.SIGTERM}, {"HUP", syscall.SIGHUP}, {"QUIT", syscall.SIGQUIT}, {"PIPE", syscall.SIGPIPE}, {"SEGV", syscall.SIGSEGV}, {"ABRT", syscall.SIGABRT}} {
		if s.n == name {
			return int(s.v)
		}
	}
	return 1
}

// setupTTY requests a PTY sized like the local terminal and keeps the
// size in step.
func setupTTY(s *ssh.Session, stdin io.Reader) (func(), error) {
	w, h := 80, 24
	fd := -1
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd = int(f.Fd())
		if cw, ch, err := term.GetSize(fd); err == nil {
			w, h = cw, ch
		}
	}
	termName := os.Getenv("TERM")
	if termName == "" {
		termName = "xterm-256color"
	}
	if err := s.RequestPty(termName, h, w, ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}); err != nil {
		return nil, fmt.Errorf("request a terminal: %w", err)
	}
	if fd < 0 {
		return func() {}, nil
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if cw, ch, err := term.GetSize(fd); err == nil {
					s.WindowChange(ch, cw)
				}
			case <-stop:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(stop)
		term.Restore(fd, old)
	}, nil
}
