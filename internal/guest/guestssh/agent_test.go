package guestssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/agent"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// agentVM serves the guest agent's SSH server on 127.0.0.1 (in this
// process, as root's stand-in) and returns the VM a client would see.
func agentVM(t *testing.T) (api.VM, ssh.Signer) {
	t.Helper()
	_, hp, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := ssh.NewSignerFromKey(hp)
	user, _, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.NeedRoot(t, "running the agent's sessions as the guest's root account")
	srv := agent.NewSSHServer(host, []ssh.PublicKey{user.PublicKey()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go srv.Serve(ln)
	return api.VM{Name: "t", State: api.VMRunning, SSHPort: ln.Addr().(*net.TCPAddr).Port, HostKey: ssh.FingerprintSHA256(host.PublicKey())}, user
}

func TestRunAndCopyAgainstTheAgent(t *testing.T) {
	vm, key := agentVM(t)
	ctx := context.Background()
	c, err := Dial(ctx, vm, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two buffers: the session copies stdout and stderr concurrently, and
	// one bytes.Buffer written from two goroutines loses writes.
	var out, errOut bytes.Buffer
	code, err := Run(ctx, c, Command([]string{"sh", "-c", "echo hi; exit 7"}), IO{Stdout: &out, Stderr: &errOut})
	if err != nil || code != 7 || out.String() != "hi\n" {
		t.Fatalf("Run = %d, %v, %q", code, err, out.String())
	}
	code, _ = Run(ctx, c, Command([]string{"sh", "-c", "kill -TERM $$"}), IO{Stdout: &out, Stderr: &errOut})
	if code != 128+15 {
		t.Errorf("killed by SIGTERM: exit %d, want 143", code)
	}

	// A tree up and back down: contents, modes, a symlink.
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o600)
	os.WriteFile(filepath.Join(src, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("a.txt", filepath.Join(src, "link"))
	guest := t.TempDir() // the "guest" is this host
	if _, err := Upload(c, src, guest+"/new/"); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if _, err := Download(c, guest+"/new/tree", back); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(back, "a.txt")); string(b) != "alpha" {
		t.Errorf("a.txt = %q", b)
	}
	if st, err := os.Stat(filepath.Join(back, "sub", "run.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode: %v, %v", st, err)
	}
	if st, _ := os.Stat(filepath.Join(back, "a.txt")); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a.txt mode: %v", st)
	}
	if l, err := os.Readlink(filepath.Join(back, "link")); err != nil || l != "a.txt" {
		t.Errorf("link = %q, %v", l, err)
	}
	if _, err := Download(c, guest+"/missing", back); err == nil {
		t.Error("download of a missing path succeeded")
	}
	// Into an existing directory, the copy goes inside it: a tree, again
	// (a link of its own there is made anew), and a file.
	if _, err := Download(c, guest+"/new/tree", back); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(back, "tree", "link")); err != nil || l != "a.txt" {
		t.Errorf("tree/link = %q, %v", l, err)
	}
	if n, err := Download(c, guest+"/new/tree/sub/run.sh", back+"/"); err != nil || n != int64(len("#!/bin/sh\n")) {
		t.Fatalf("a file into a directory: %d bytes, %v", n, err)
	}
	if st, err := os.Stat(filepath.Join(back, "run.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("run.sh copied alone: %v, %v", st, err)
	}
	// Over a file of the same name, the file is replaced.
	if _, err := Download(c, guest+"/new/tree/a.txt", filepath.Join(back, "run.sh")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(back, "run.sh")); string(b) != "alpha" {
		t.Errorf("run.sh overwritten = %q", b)
	}
}

func TestDialRefusesAnotherHostKey(t *testing.T) {
	vm, key := agentVM(t)
	vm.HostKey = "SHA256:somethingelse"
	if _, err := Dial(context.Background(), vm, key); err == nil || !strings.Contains(err.Error(), "refusing to connect") {
		t.Fatalf("Dial with a wrong pinned key: %v", err)
	}
	vm.State = api.VMStopped
	if _, err := Dial(context.Background(), vm, key); err == nil || !strings.Contains(err.Error(), "vm start t") {
		t.Fatalf("Dial to a stopped VM: %v", err)
	}
}

func TestRunEnvAndKillAfter(t *testing.T) {
	vm, key := agentVM(t)
	c, err := Dial(context.Background(), vm, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out, errOut bytes.Buffer
	code, err := Run(context.Background(), c, `printf '%s|%s' "$A" "$B"`, IO{Stdout: &out, Stderr: &errOut, Env: map[string]string{"A": "one two", "B": "$(x)"}})
	if err != nil || code != 0 || out.String() != "one two|$(x)" {
		t.Fatalf("env: %d, %v, %q", code, err, out.String())
	}
	// A command that ignores SIGINT is killed once KillAfter passes.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, err = Run(ctx, c, `trap '' INT; sleep 300`, IO{Stdout: &out, Stderr: &errOut, KillAfter: 300 * time.Millisecond})
	if err != nil || code != 128+9 || time.Since(start) > 10*time.Second {
		t.Fatalf("a command that ignores SIGINT: exit %d, %v after %s; want 137", code, err, time.Since(start))
	}
}
