package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/service/workspace"
)

var exporter = workspace.New(workspace.Deps{MaxPullBytes: 1 << 30, MaxPullEntries: 1000})

// The work-tar subsystem streams the work tree as the daemon reads it.
func TestWorkTarSubsystem(t *testing.T) {
	work := t.TempDir()
	os.MkdirAll(filepath.Join(work, "src"), 0o755)
	os.WriteFile(filepath.Join(work, "src", "a.go"), []byte("package a\n"), 0o644)
	os.Symlink("/etc/shadow", filepath.Join(work, "link"))
	c, _, _ := startServer(t, func(s *SSHServer) { s.WorkDir = work })
	var buf bytes.Buffer
	if err := exporter.ExportGuest(context.Background(), c, 1<<30, &buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, e := range testkit.ReadTar(t, &buf) {
		got[name] = e.Header.Linkname + e.Body
	}
	if got["src/a.go"] != "package a\n" || got["link"] != "/etc/shadow" || len(got) != 3 {
		t.Errorf("exported %q", got)
	}

	// A missing work tree is an error the daemon can report, not an
	// empty archive taken for work.
	c2, _, _ := startServer(t, func(s *SSHServer) { s.WorkDir = filepath.Join(work, "missing") })
	if err := exporter.ExportGuest(context.Background(), c2, 1<<30, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "agent failed") {
		t.Errorf("missing /work: %v", err)
	}
}

func authSync(t *testing.T, c *ssh.Client, a guestproto.AuthSync) (bool, string) {
	t.Helper()
	b, _ := json.Marshal(a)
	ok, reply, err := c.SendRequest(guestproto.AuthSyncRequest, true, ssh.Marshal(struct{ JSON string }{string(b)}))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Message string }
	ssh.Unmarshal(reply, &m)
	return ok, m.Message
}

// Lent variables reach every later session; lent files go to Lend.
func TestAuthSync(t *testing.T) {
	var lent []guestproto.AuthSync
	c, _, _ := startServer(t, func(s *SSHServer) {
		s.Lend = func(a guestproto.AuthSync) error { lent = append(lent, a); return nil }
	})
	ok, msg := authSync(t, c, guestproto.AuthSync{User: "root", Env: map[string]string{"GH_TOKEN": "tok"}, Files: map[string][]byte{".gitconfig": []byte("x")}})
	if !ok {
		t.Fatalf("refused: %s", msg)
	}
	if len(lent) != 1 || string(lent[0].Files[".gitconfig"]) != "x" {
		t.Errorf("lent %+v", lent)
	}
	s, _ := c.NewSession()
	out, err := s.Output("echo $GH_TOKEN")
	if err != nil || string(out) != "tok\n" {
		t.Errorf("session sees %q, %v", out, err)
	}
	// A session's own variable still wins, as with sshd's AcceptEnv.
	s, _ = c.NewSession()
	s.Setenv("GH_TOKEN", "mine")
	if out, _ := s.Output("echo $GH_TOKEN"); string(out) != "mine\n" {
		t.Errorf("session's own variable lost: %q", out)
	}
	c2, _, _ := startServer(t)
	if ok, msg := authSync(t, c2, guestproto.AuthSync{Files: map[string][]byte{"a": nil}}); ok || !strings.Contains(msg, "cannot lend files") {
		t.Errorf("no Lend: ok=%v %s", ok, msg)
	}
}

// A session that asks for agent forwarding gets SSH_AUTH_SOCK, through
// which the client's agent signs; the socket goes with the session.
func TestAgentForwarding(t *testing.T) {
	c, _, _ := startServer(t, func(s *SSHServer) { s.AgentDir = t.TempDir() })
	keyring := agent.NewKeyring()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "host-only key"})
	if err := agent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatal(err)
	}
	stdout, _ := s.StdoutPipe()
	stdin, _ := s.StdinPipe()
	if err := s.Start("echo $SSH_AUTH_SOCK; read wait"); err != nil {
		t.Fatal(err)
	}
	var sock string
	fmt.Fscanln(stdout, &sock)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial %q: %v", sock, err)
	}
	keys, err := agent.NewClient(conn).List()
	conn.Close()
	if err != nil || len(keys) != 1 || keys[0].Comment != "host-only key" {
		t.Errorf("keys through the forwarded agent: %v, %v", keys, err)
	}
	stdin.Write([]byte("done\n"))
	s.Wait()
	s.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(sock); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("the agent socket outlived its session")
}
