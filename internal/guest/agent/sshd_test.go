package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/testkit"
)

func signer(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer runs the agent's SSH server on 127.0.0.1 with one
// authorized key and returns a connected client.
func startServer(t *testing.T, configure ...func(*SSHServer)) (*ssh.Client, string, ssh.Signer) {
	t.Helper()
	testkit.NeedRoot(t, "running the agent's sessions as the guest's root account")
	return serveAgent(t, configure...)
}

// serveAgent is startServer for tests that run no session, which need no
// root.
func serveAgent(t *testing.T, configure ...func(*SSHServer)) (*ssh.Client, string, ssh.Signer) {
	t.Helper()
	host, user := signer(t), signer(t)
	authorized := ParseAuthorizedKeys(ssh.MarshalAuthorizedKey(user.PublicKey()))
	srv := NewSSHServer(host, authorized)
	for _, f := range configure {
		f(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go srv.Serve(ln)
	c, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(user)},
		HostKeyCallback: ssh.FixedHostKey(host.PublicKey()), Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ln.Addr().String(), host
}

func TestExecExitCodesAndStreams(t *testing.T) {
	c, _, _ := startServer(t)
	tests := []struct {
		cmd, stdin, stdout, stderr string
		code                       int
	}{
		{"echo out; echo err >&2", "", "out\n", "err\n", 0},
		{"exit 7", "", "", "", 7},
		{"cat", "piped in\n", "piped in\n", "", 0},
		{"echo $GREETING", "", "hello\n", "", 0},
		{"kill -TERM $$", "", "", "", 128 + 15},
		{"/nonexistent-command", "", "", "", 127},
	}
	for _, tt := range tests {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		s.Stdout, s.Stderr = &out, &errOut
		s.Stdin = strings.NewReader(tt.stdin)
		s.Setenv("GREETING", "hello")
		err = s.Run(tt.cmd)
		code := 0
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitStatus()
		} else if err != nil {
			t.Fatalf("%q: %v", tt.cmd, err)
		}
		if code != tt.code || out.String() != tt.stdout || (tt.stderr != "" && errOut.String() != tt.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d %q %q", tt.cmd, code, out.String(), errOut.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestUnauthorizedKeyRefused(t *testing.T) {
	_, addr, host := startServer(t)
	_, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer(t))},
		HostKeyCallback: ssh.FixedHostKey(host.PublicKey()), Timeout: 5 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("stranger's key: %v", err)
	}
}

func TestPTY(t *testing.T) {
	c, _, _ := startServer(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 40, 100, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := s.WindowChange(50, 120); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("tty; stty size; echo $TERM")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(string(out), "\r", "")
	if !strings.HasPrefix(got, "/dev/pts/") || !strings.Contains(got, "40 100") && !strings.Contains(got, "50 120") || !strings.Contains(got, "xterm") {
		t.Fatalf("pty session printed %q", got)
	}
}

func TestSFTP(t *testing.T) {
	c, _, _ := startServer(t)
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	path := filepath.Join(t.TempDir(), "f.bin")
	want := bytes.Repeat([]byte{0, 1, 2, 255}, 100000)
	f, err := sc.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(want)
	f.Close()
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Fatal("uploaded bytes differ")
	}
	r, err := sc.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(r)
	if !bytes.Equal(back, want) {
		t.Fatal("downloaded bytes differ")
	}
}

func TestLocalForward(t *testing.T) {
	c, _, _ := startServer(t)
	echo, _ := net.Listen("tcp", "127.0.0.1:0")
	defer echo.Close()
	go func() {
		conn, err := echo.Accept()
		if err == nil {
			io.Copy(conn, conn)
			conn.Close()
		}
	}()
	conn, err := c.Dial("tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("through the tunnel"))
	buf := make([]byte, 18)
	io.ReadFull(conn, buf)
	if string(buf) != "through the tunnel" {
		t.Fatalf("forwarded %q", buf)
	}
}

func TestPowerOffRequest(t *testing.T) {
	asked := make(chan struct{}, 1)
	c, _, _ := startServer(t, func(srv *SSHServer) { srv.PowerOff = func() { asked <- struct{}{} } })
	if ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil || ok {
		t.Fatalf("unknown global request: ok=%v err=%v, want refused", ok, err)
	}
	select {
	case <-asked:
		t.Fatal("an unknown request powered off")
	default:
	}
	if ok, _, err := c.SendRequest(guestproto.PowerOffRequest, true, nil); err != nil || !ok {
		t.Fatalf("power-off request: ok=%v err=%v", ok, err)
	}
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("power-off request did not reach the hook")
	}
}

// Sessions run as OpenSSH's sshd runs them: the account's login shell
// from the image's passwd ("-c CMD" for commands, a login shell with a
// leading "-" interactively), with USER, LOGNAME, HOME, SHELL, PATH and the
// PTY's TERM.
func TestLoginShellAndEnvironment(t *testing.T) {
	testkit.NeedTools(t, "bash", "bash")
	bash, _ := exec.LookPath("bash")
	home := t.TempDir()
	passwd := filepath.Join(t.TempDir(), "passwd")
	uid := os.Getuid()
	os.WriteFile(passwd, []byte(fmt.Sprintf("daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nroot:x:%d:%d:root:%s:%s\n", uid, os.Getgid(), home, bash)), 0o644)
	c, _, _ := startServer(t, func(s *SSHServer) { s.Passwd = passwd })

	s, _ := c.NewSession()
	out, err := s.Output(`echo "$0|$SHELL|$HOME|$USER|$LOGNAME|$PATH|$(pwd)|${BASH_VERSION:+bash}"`)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("bash|%s|%s|root|root|%s|%s|bash\n", bash, home, rootPath, home)
	if uid != 0 {
		want = fmt.Sprintf("bash|%s|%s|root|root|%s|%s|bash\n", bash, home, userPath, home)
	}
	if string(out) != want {
		t.Errorf("exec environment:\n got %q\nwant %q", out, want)
	}

	s, _ = c.NewSession()
	var screen bytes.Buffer
	s.Stdout = &screen
	stdin, _ := s.StdinPipe()
	if err := s.RequestPty("xterm-256color", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, `echo "login=$0 term=$TERM shell=$SHELL"; exit`+"\n")
	s.Wait()
	if !strings.Contains(screen.String(), "login=-bash term=xterm-256color shell="+bash) {
		t.Errorf("interactive session:\n%s", screen.String())
	}
}

func TestLookupAccount(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/no/such/shell\ndev:x:1000:1000::/home/dev:/bin/sh\nbroken:x:zero:0::/:/bin/sh\n"), 0o644)
	for _, tt := range []struct {
		name, file string
		want       account
		shell      string
	}{
		{"root", passwd, account{Name: "root", Home: "/root", Shell: "/no/such/shell"}, "/bin/sh"},
		{"dev", passwd, account{Name: "dev", UID: 1000, GID: 1000, Home: "/home/dev", Shell: "/bin/sh"}, "/bin/sh"},
		{"nobody-here", passwd, account{Name: "root", Home: "/root", Shell: "/no/such/shell"}, "/bin/sh"},
		{"broken", passwd, account{Name: "root", Home: "/root", Shell: "/bin/sh"}, "/bin/sh"},
		{"root", "/no/passwd", account{Name: "root", Home: "/root", Shell: "/bin/sh"}, "/bin/sh"},
	} {
		got := lookupAccount(tt.file, tt.name)
		if got != tt.want || got.shell() != tt.shell {
			t.Errorf("lookupAccount(%s) = %+v (shell %s), want %+v (shell %s)", tt.name, got, got.shell(), tt.want, tt.shell)
		}
	}
}

// alive says whether pid is a process that has not exited (a zombie
// waiting for its parent counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("%s (pid %d) still runs", what, pid)
}

// startChild runs a command that starts a child and prints its PID, and
// returns the session and that PID once it runs.
func startChild(t *testing.T, c *ssh.Client, script string) (*ssh.Session, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start(script); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		t.Fatalf("read the child's pid: %v", err)
	}
	go io.Copy(io.Discard, out)
	return s, pid
}

func TestSignalAndHangUpReachTheWholeCommand(t *testing.T) {
	c, _, _ := startServer(t)
	// A signal reaches the grandchild a shell waits on, as Ctrl-C in a
	// terminal would; sh alone would wait for it to finish.
	s, pid := startChild(t, c, "sleep 300 & echo $!; wait; echo after")
	if err := s.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "the child of a signaled command")
	s.Wait()

	// A client that goes away mid-command takes the command with it.
	s, pid = startChild(t, c, "sleep 300 & echo $!; wait")
	s.Close()
	waitGone(t, pid, "the child of a command whose session closed")

	// What a command leaves running on purpose after it exited stays.
	s, pid = startChild(t, c, "sleep 300 >/dev/null 2>&1 & echo $!")
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	time.Sleep(200 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("a background process the command left running was killed when its session ended")
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// An identity request switches the server to the host key and keys it
// produced: new connections meet the new key, the old user key is out.
func TestIdentityRequest(t *testing.T) {
	newHost, newUser := signer(t), signer(t)
	var got guestproto.Identity
	c, addr, oldHost := startServer(t, func(s *SSHServer) {
		s.Identity = func(id guestproto.Identity) (ssh.Signer, []ssh.PublicKey, error) {
			got = id
			if id.Hostname == "refuse" {
				return nil, nil, errors.New("no such thing")
			}
			return newHost, []ssh.PublicKey{newUser.PublicKey()}, nil
		}
	})
	send := func(id guestproto.Identity) (bool, []byte) {
		b, _ := json.Marshal(id)
		ok, reply, err := c.SendRequest(guestproto.IdentityRequest, true, ssh.Marshal(struct{ JSON string }{string(b)}))
		if err != nil {
			t.Fatal(err)
		}
		return ok, reply
	}
	if ok, reply := send(guestproto.Identity{Hostname: "refuse"}); ok || !bytes.Contains(reply, []byte("no such thing")) {
		t.Errorf("a failed identity: ok %v, %q", ok, reply)
	}
	ok, reply := send(guestproto.Identity{Hostname: "c1", Keys: []string{"k"}, Entropy: make([]byte, 32)})
	var r struct{ Fingerprint string }
	if !ok || ssh.Unmarshal(reply, &r) != nil || r.Fingerprint != ssh.FingerprintSHA256(newHost.PublicKey()) {
		t.Fatalf("identity reply: ok %v, %q", ok, reply)
	}
	if got.Hostname != "c1" || len(got.Keys) != 1 || len(got.Entropy) != 32 {
		t.Errorf("the hook got %+v", got)
	}
	// The connection that asked goes on.
	if s, err := c.NewSession(); err != nil {
		t.Errorf("the asking connection: %v", err)
	} else {
		s.Close()
	}
	dial := func(user ssh.Signer, host ssh.PublicKey) error {
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(user)},
			HostKeyCallback: ssh.FixedHostKey(host), Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(newUser, newHost.PublicKey()); err != nil {
		t.Errorf("new key, new host key: %v", err)
	}
	if err := dial(newUser, oldHost.PublicKey()); err == nil {
		t.Error("the server still answers with the template's host key")
	}
}

// A request whose work ends at once (a missing /work, a command that
// exits at once) must still be answered: the client reads a channel
// closed before the reply as EOF, and takes the request for refused.
func TestRequestAnsweredBeforeItsWorkEnds(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	ptyReq := ssh.Marshal(struct {
		Term             string
		Cols, Rows, W, H uint32
		Modes            string
	}{Term: "xterm", Cols: 80, Rows: 24})
	tests := []struct {
		name    string
		pty     bool
		typ     string
		payload []byte
	}{
		{"work-tar of a missing tree", false, "subsystem", ssh.Marshal(struct{ Name string }{guestproto.WorkTarSubsystem})},
		{"exec", false, "exec", ssh.Marshal(struct{ Command string }{"true"})},
		{"exec on a pty", true, "exec", ssh.Marshal(struct{ Command string }{"true"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 20; i++ {
				c, _, _ := startServer(t, func(s *SSHServer) { s.WorkDir = missing })
				ch, reqs, err := c.OpenChannel("session", nil)
				if err != nil {
					t.Fatal(err)
				}
				go ssh.DiscardRequests(reqs)
				go io.Copy(io.Discard, ch)
				if tt.pty {
					if ok, err := ch.SendRequest("pty-req", true, ptyReq); !ok || err != nil {
						t.Fatalf("pty-req: %v, %v", ok, err)
					}
				}
				if ok, err := ch.SendRequest(tt.typ, true, tt.payload); !ok || err != nil {
					t.Fatalf("try %d: answered %v, %v", i, ok, err)
				}
				ch.Close()
			}
		})
	}
}
