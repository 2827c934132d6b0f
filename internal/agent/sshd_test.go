package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guestproto"
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
