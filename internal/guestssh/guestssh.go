// Package guestssh is the client side of a guest's SSH: the user's banger
// key, connections pinned to the host key the guest printed on its
// console, commands with exit codes, interactive shells and file copies.
package guestssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/errdefs"
)

// KeyPath is where the user's banger key lives: $BANGER_SSH_KEY, else
// $XDG_CONFIG_HOME/banger/id_ed25519, else ~/.config/banger/id_ed25519.
func KeyPath() (string, error) {
	if p := os.Getenv("BANGER_SSH_KEY"); p != "" {
		return p, nil
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the banger ssh key: %w (set BANGER_SSH_KEY)", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "banger", "id_ed25519"), nil
}

// LoadOrCreateKey returns the user's key and its authorized_keys line,
// making the pair (PATH and PATH.pub, as ssh-keygen would) on first use.
func LoadOrCreateKey(path string) (ssh.Signer, string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, "", fmt.Errorf("ssh key %s: %w (a passphrase-protected key cannot be used; set BANGER_SSH_KEY to another)", path, err)
		}
		return k, line(k.PublicKey()), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("ssh key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "banger")
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("create ssh key directory: %w", err)
	}
	k, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(path+".pub", []byte(line(k.PublicKey())+"\n"), 0o644); err != nil {
		return nil, "", fmt.Errorf("write ssh key: %w", err)
	}
	// O_EXCL: two commands racing on first use must not write two keys.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKey(path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("write ssh key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(blk)); err != nil {
		f.Close()
		return nil, "", err
	}
	if err := f.Close(); err != nil {
		return nil, "", err
	}
	return k, line(k.PublicKey()), nil
}

func line(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " banger"
}

// Dial connects to a running VM as root, pinning the host key its agent
// printed on the console.
func Dial(ctx context.Context, vm api.VM, key ssh.Signer) (*ssh.Client, error) {
	if vm.State != api.VMRunning {
		return nil, fmt.Errorf("vm %s is %s: start it with `banger vm start %s`: %w", vm.Name, vm.State, vm.Name, errdefs.ErrConflict)
	}
	cfg := &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if vm.HostKey != "" && ssh.FingerprintSHA256(k) != vm.HostKey {
				return fmt.Errorf("vm %s answered with host key %s, not the %s its console printed: refusing to connect", vm.Name, ssh.FingerprintSHA256(k), vm.HostKey)
			}
			return nil
		},
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.SSHPort))
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to vm %s at %s: %w", vm.Name, addr, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("vm %s does not accept your banger key: it was created by another user, or with other keys: %w", vm.Name, err)
		}
		return nil, fmt.Errorf("ssh to vm %s: %w", vm.Name, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// Command renders argv as one shell command line, quoting where needed,
// the way the guest's sh will split it back.
func Command(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = quote(a)
	}
	return strings.Join(out, " ")
}

func quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
