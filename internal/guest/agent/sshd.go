package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/format/worktar"
	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// SSHServer serves exec, PTY shells, SFTP and local port forwarding to
// holders of the authorized keys, so that any image is reachable over SSH
// without an sshd of its own.
type SSHServer struct {
	cfgMu  sync.Mutex
	config *ssh.ServerConfig // guarded by cfgMu: replaced by an identity request
	// Passwd is the image's account database: a session runs as the
	// account the client names (root for banger's CLI), in its login
	// shell, with the environment sshd would give it.
	Passwd string
	// Logf reports connection-level problems.
	Logf func(format string, args ...any)
	// Wait waits for a started command and returns its exit code. As PID
	// 1 the agent reaps every child itself, so it hands statuses over
	// here instead of letting exec.Cmd.Wait race its reaper.
	Wait func(*exec.Cmd) int
	// PowerOff, when set, is called for the poweroff@banger request.
	PowerOff func()
	// Lend, when set, places the files of an authsync@banger request.
	Lend func(guestproto.AuthSync) error
	// Identity, when set, applies an identity@banger request and returns
	// the guest's new host key and authorized keys, which the server
	// takes for every connection from then on.
	Identity func(guestproto.Identity) (ssh.Signer, []ssh.PublicKey, error)
	// WorkDir is what the work-tar subsystem archives.
	WorkDir string
	// AgentDir holds forwarded SSH agents' sockets ("" for the system's
	// temporary directory).
	AgentDir string

	envMu   sync.Mutex
	lentEnv map[string]string // guarded by envMu: set in every session
}

// NewSSHServer accepts only the given public keys.
func NewSSHServer(hostKey ssh.Signer, authorized []ssh.PublicKey) *SSHServer {
	return &SSHServer{
		config:  serverConfig(hostKey, authorized),
		Passwd:  "/etc/passwd",
		Logf:    func(string, ...any) {},
		Wait:    func(c *exec.Cmd) int { return waitStatus(c.Wait()) },
		WorkDir: guestproto.WorkDir,
	}
}

func serverConfig(hostKey ssh.Signer, authorized []ssh.PublicKey) *ssh.ServerConfig {
	allowed := map[string]bool{}
	for _, k := range authorized {
		allowed[string(k.Marshal())] = true
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if allowed[string(key.Marshal())] {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostKey)
	return cfg
}

// ParseAuthorizedKeys reads an authorized_keys document.
func ParseAuthorizedKeys(b []byte) []ssh.PublicKey {
	var keys []ssh.PublicKey
	for len(b) > 0 {
		k, _, _, rest, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			break
		}
		keys = append(keys, k)
		b = rest
	}
	return keys
}

// Serve accepts connections until ln is closed.
func (s *SSHServer) Serve(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go s.conn(nc)
	}
}

func (s *SSHServer) conn(nc net.Conn) {
	s.cfgMu.Lock()
	cfg := s.config
	s.cfgMu.Unlock()
	sconn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		s.Logf("ssh handshake from %s: %v", nc.RemoteAddr(), err)
		nc.Close()
		return
	}
	defer sconn.Close()
	go s.connRequests(sconn, reqs)
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			go s.session(nch, sconn)
		case "direct-tcpip":
			go s.forward(nch)
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type "+nch.ChannelType())
		}
	}
}

// connRequests answers a connection's global requests: remote
// forwarding (to the connection that asked), and the rest as
// globalRequests does.
func (s *SSHServer) connRequests(conn *ssh.ServerConn, reqs <-chan *ssh.Request) {
	fwd := newRemoteForwards(conn)
	rest := make(chan *ssh.Request)
	defer close(rest)
	go s.globalRequests(rest)
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			ok, reply := fwd.listen(req.Payload)
			if req.WantReply {
				req.Reply(ok, reply)
			}
		case "cancel-tcpip-forward":
			ok := fwd.cancel(req.Payload)
			if req.WantReply {
				req.Reply(ok, nil)
			}
		default:
			rest <- req
		}
	}
}

// globalRequests answers the host's power-off and auth sync requests and
// refuses the rest (keepalives included, as OpenSSH's sshd does for
// unknown ones).
func (s *SSHServer) globalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch {
		case req.Type == guestproto.PowerOffRequest && s.PowerOff != nil:
			if req.WantReply {
				req.Reply(true, nil)
			}
			s.PowerOff()
		case req.Type == guestproto.AuthSyncRequest:
			err := s.authSync(req.Payload)
			if req.WantReply {
				var msg []byte
				if err != nil {
					msg = ssh.Marshal(struct{ Message string }{err.Error()})
				}
				req.Reply(err == nil, msg)
			}
		case req.Type == guestproto.IdentityRequest && s.Identity != nil:
			fp, err := s.identity(req.Payload)
			if req.WantReply {
				if err != nil {
					req.Reply(false, ssh.Marshal(struct{ Message string }{err.Error()}))
				} else {
					req.Reply(true, ssh.Marshal(struct{ Fingerprint string }{fp}))
				}
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// identity applies an identity request and switches to the host key and
// authorized keys it produced. Connections already open (the one that
// asked) go on; new ones meet the new key.
func (s *SSHServer) identity(payload []byte) (string, error) {
	var wrapped struct{ JSON string }
	if err := ssh.Unmarshal(payload, &wrapped); err != nil {
		return "", fmt.Errorf("bad identity request: %w", err)
	}
	var id guestproto.Identity
	if err := json.Unmarshal([]byte(wrapped.JSON), &id); err != nil {
		return "", fmt.Errorf("bad identity request: %w", err)
	}
	host, keys, err := s.Identity(id)
	if err != nil {
		return "", err
	}
	s.cfgMu.Lock()
	s.config = serverConfig(host, keys)
	s.cfgMu.Unlock()
	return ssh.FingerprintSHA256(host.PublicKey()), nil
}

// authSync lends what the request carries: files through Lend, variables
// to every session started from now on.
func (s *SSHServer) authSync(payload []byte) error {
	var wrapped struct{ JSON string }
	if err := ssh.Unmarshal(payload, &wrapped); err != nil {
		return fmt.Errorf("bad auth sync request: %w", err)
	}
	var a guestproto.AuthSync
	if err := json.Unmarshal([]byte(wrapped.JSON), &a); err != nil {
		return fmt.Errorf("bad auth sync request: %w", err)
	}
	if len(a.Files) > 0 || len(a.Trust) > 0 {
		if s.Lend == nil {
			return errors.New("this agent cannot lend files")
		}
		if err := s.Lend(a); err != nil {
			return err
		}
	}
	s.envMu.Lock()
	defer s.envMu.Unlock()
	for k, v := range a.Env {
		if s.lentEnv == nil {
			s.lentEnv = map[string]string{}
		}
		s.lentEnv[k] = v
	}
	return nil
}

func (s *SSHServer) sessionEnv() []string {
	s.envMu.Lock()
	defer s.envMu.Unlock()
	var out []string
	for k, v := range s.lentEnv {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// forward serves local port forwarding (ssh -L).
func (s *SSHServer) forward(nch ssh.NewChannel) {
	var req struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil {
		nch.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	target, err := net.Dial("tcp", net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))))
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		target.Close()
		return
	}
	go s.globalRequests(reqs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(target, ch); target.(*net.TCPConn).CloseWrite() }()
	go func() { defer wg.Done(); io.Copy(ch, target); ch.CloseWrite() }()
	wg.Wait()
	ch.Close()
	target.Close()
}

type session struct {
	s    *SSHServer
	user string
	ch   ssh.Channel
	env  []string
	pty  *pty.Winsize
	term string
	tty  *os.File // the PTY's controlling side, once a shell or command runs on one
	cmd  *exec.Cmd
	// exited is set once cmd's exit was reported: its process group may
	// then hold what it left running on purpose (a daemon it started).
	exited bool
	mu     sync.Mutex // guards tty, cmd and exited, which requests read after start

	conn     *ssh.ServerConn
	agentLn  net.Listener // the forwarded SSH agent's socket, once asked for
	agentDir string
}

func (s *SSHServer) session(nch ssh.NewChannel, conn *ssh.ServerConn) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	ss := &session{s: s, ch: ch, user: conn.User(), conn: conn}
	defer ss.closeAgent()
	for req := range reqs {
		ok, begin := ss.request(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		// What a request starts may end at once (a missing work tree, a
		// command that exits at once) and close the channel: a reply
		// not sent by then is lost, and the client reads EOF for its
		// answer. So the work begins only once the request is answered.
		if begin != nil {
			begin()
		}
	}
	ss.killOrphaned()
}

// killOrphaned ends a command whose client closed the session before it
// exited (a timeout, a canceled call, a dropped connection): nobody can
// read its output or stop it any more, so it must not run on unseen.
func (ss *session) killOrphaned() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cmd != nil && ss.cmd.Process != nil && !ss.exited {
		ss.signalGroup(syscall.SIGKILL)
	}
}

// signalGroup signals the command and every process it started: each
// command leads its own process group (a terminal's session, or one made
// at start), as a shell's job does. ss.mu must be held.
func (ss *session) signalGroup(sig syscall.Signal) {
	pid := ss.cmd.Process.Pid
	if syscall.Kill(-pid, sig) != nil {
		ss.cmd.Process.Signal(sig)
	}
}

// request handles one of a session's requests and says whether it was
// accepted. The work an exec, shell or subsystem request starts comes
// back as begin, for the caller to run once the request is answered.
func (ss *session) request(req *ssh.Request) (ok bool, begin func()) {
	switch req.Type {
	case "env":
		return ss.setEnv(req.Payload), nil
	case "pty-req":
		return ss.requestPTY(req.Payload), nil
	case "window-change":
		return ss.resize(req.Payload), nil
	case "signal":
		return ss.signal(req.Payload), nil
	case "exec":
		var c struct{ Command string }
		if ssh.Unmarshal(req.Payload, &c) != nil {
			return false, nil
		}
		acct := lookupAccount(ss.s.Passwd, ss.user)
		return ss.start(acct.command(c.Command, false), acct)
	case "shell":
		acct := lookupAccount(ss.s.Passwd, ss.user)
		return ss.start(acct.command("", true), acct)
	case "auth-agent-req@openssh.com":
		return ss.forwardAgent(), nil
	case "subsystem":
		return ss.subsystem(req.Payload)
	}
	return false, nil
}

func (ss *session) setEnv(payload []byte) bool {
	var kv struct{ Name, Value string }
	if ssh.Unmarshal(payload, &kv) != nil {
		return false
	}
	ss.env = append(ss.env, kv.Name+"="+kv.Value)
	return true
}

// requestPTY notes the terminal a later exec or shell is to run on.
func (ss *session) requestPTY(payload []byte) bool {
	var p struct {
		Term             string
		Cols, Rows, W, H uint32
		Modes            string
	}
	if ssh.Unmarshal(payload, &p) != nil {
		return false
	}
	ss.term = p.Term
	ss.pty = &pty.Winsize{Cols: uint16(p.Cols), Rows: uint16(p.Rows)}
	return true
}

// resize applies a window change to the running command's terminal, or
// to the one still to be made.
func (ss *session) resize(payload []byte) bool {
	if len(payload) < 8 {
		return false
	}
	ws := &pty.Winsize{Cols: uint16(binary.BigEndian.Uint32(payload)), Rows: uint16(binary.BigEndian.Uint32(payload[4:]))}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.tty != nil {
		pty.Setsize(ss.tty, ws)
	} else if ss.pty != nil {
		ss.pty = ws
	}
	return true
}

// signal passes a signal to the command while it runs.
func (ss *session) signal(payload []byte) bool {
	var sig struct{ Name string }
	if ssh.Unmarshal(payload, &sig) != nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cmd == nil || ss.cmd.Process == nil {
		return false
	}
	if n, ok := signals[ssh.Signal(sig.Name)]; ok && !ss.exited {
		ss.signalGroup(n)
		return true
	}
	return false
}

// subsystem accepts the work-tar and SFTP subsystems; begin serves the
// one accepted.
func (ss *session) subsystem(payload []byte) (ok bool, begin func()) {
	var sub struct{ Name string }
	if ssh.Unmarshal(payload, &sub) != nil {
		return false, nil
	}
	switch sub.Name {
	case guestproto.WorkTarSubsystem:
		return true, func() { go ss.serveWorkTar() }
	case "sftp":
		return true, func() { go ss.serveSFTP() }
	}
	return false, nil
}

// serveWorkTar streams the work tree; a failure goes to stderr and the
// exit status, so that it is not taken for an empty tree.
func (ss *session) serveWorkTar() {
	code := 0
	if err := worktar.Write(context.Background(), ss.s.WorkDir, ss.ch); err != nil {
		fmt.Fprintf(ss.ch.Stderr(), "banger-agent: %v\n", err)
		code = 1
	}
	ss.exit(code)
}

func (ss *session) serveSFTP() {
	srv, err := sftp.NewServer(ss.ch)
	if err == nil {
		srv.Serve()
		srv.Close()
	}
	ss.exit(0)
}

var signals = map[ssh.Signal]syscall.Signal{
	ssh.SIGABRT: syscall.SIGABRT, ssh.SIGALRM: syscall.SIGALRM, ssh.SIGFPE: syscall.SIGFPE,
	ssh.SIGHUP: syscall.SIGHUP, ssh.SIGILL: syscall.SIGILL, ssh.SIGINT: syscall.SIGINT,
	ssh.SIGKILL: syscall.SIGKILL, ssh.SIGPIPE: syscall.SIGPIPE, ssh.SIGQUIT: syscall.SIGQUIT,
	ssh.SIGSEGV: syscall.SIGSEGV, ssh.SIGTERM: syscall.SIGTERM, ssh.SIGUSR1: syscall.SIGUSR1,
	ssh.SIGUSR2: syscall.SIGUSR2,
}

// start runs cmd as the session's command, on the requested terminal or
// on pipes. begin copies its input and output and reports its exit.
func (ss *session) start(cmd *exec.Cmd, acct account) (ok bool, begin func()) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cmd != nil {
		return false, nil
	}
	// The client's variables come last, so they win, as with sshd's
	// AcceptEnv; TERM comes from the PTY request.
	cmd.Env = append(acct.env(), ss.s.sessionEnv()...)
	if ss.pty != nil && ss.term != "" {
		cmd.Env = append(cmd.Env, "TERM="+ss.term)
	}
	cmd.Env = append(cmd.Env, ss.env...)
	ss.cmd = cmd
	if ss.pty != nil {
		return ss.startOnPTY(cmd)
	}
	return true, ss.startOnPipes(cmd)
}

// startOnPTY runs cmd on a new terminal. ss.mu must be held.
func (ss *session) startOnPTY(cmd *exec.Cmd) (ok bool, begin func()) {
	tty, err := pty.StartWithSize(cmd, ss.pty)
	if err != nil {
		fmt.Fprintf(ss.ch.Stderr(), "banger-agent: %v\r\n", err)
		return false, nil
	}
	ss.tty = tty
	return true, func() {
		go func() { io.Copy(tty, ss.ch) }()
		go func() {
			io.Copy(ss.ch, tty)
			ss.exit(ss.s.Wait(cmd))
		}()
	}
}

// startOnPipes runs cmd in a process group of its own, its output on
// the channel's stdout and stderr. A command that cannot start is
// reported as exit status 127, as a shell does.
func (ss *session) startOnPipes(cmd *exec.Cmd) (begin func()) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // a PTY's command leads its own session instead
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ss.ch.Stderr(), "banger-agent: %v\n", err)
		return func() { go ss.exit(127) }
	}
	return func() {
		// Stdin is copied on its own: a client that never closes it
		// must not keep the command's exit from being reported.
		go func() { io.Copy(stdin, ss.ch); stdin.Close() }()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(ss.ch, stdout) }()
		go func() { defer wg.Done(); io.Copy(ss.ch.Stderr(), stderr) }()
		go func() {
			wg.Wait()
			ss.exit(ss.s.Wait(cmd))
		}()
	}
}

func waitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 255
	}
	return 0
}

func (ss *session) exit(code int) {
	ss.mu.Lock()
	ss.exited = true
	ss.mu.Unlock()
	ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	ss.ch.Close()
}
