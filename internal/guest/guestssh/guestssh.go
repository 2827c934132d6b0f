// Package guestssh is the client side of a guest's SSH: the user's banger
// key, connections pinned to the host key the guest printed on its
// console, commands with exit codes, interactive shells and file copies.
package guestssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
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
	k, err := sshkey.LoadOrCreate(path, "banger")
	if err != nil {
		return nil, "", fmt.Errorf("%w; set BANGER_SSH_KEY to another", err)
	}
	return k, sshkey.AuthorizedLine(k.PublicKey(), "banger"), nil
}

// Dial connects to a running VM as root, pinning the host key its agent
// printed on the console.
func Dial(ctx context.Context, vm api.VM, key ssh.Signer) (*ssh.Client, error) {
	if vm.State != api.VMRunning {
		return nil, fmt.Errorf("vm %s is %s: start it with `banger vm start %s`: %w", vm.Name, vm.State, vm.Name, errdefs.ErrConflict)
	}
	c, err := Connect(ctx, vm.SSHAddr(), vm.HostKey, key)
	if err != nil {
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("vm %s does not accept your banger key: it was created by another user, or with other keys: %w", vm.Name, err)
		}
		return nil, fmt.Errorf("vm %s: %w", vm.Name, err)
	}
	return c, nil
}

// Ciphers are what a connection to a guest agent offers, ChaCha20 first:
// the guest's side is often emulated (TCG), where Go's AES-GCM ran at 19
// MB/s and ChaCha20-Poly1305 at 64 MB/s (qemu-x86_64 -cpu max, 32 KiB
// packets), and every byte of a session, a work tar or the secrets
// proxy's tunnel is sealed in the guest. Where AES is in hardware both are
// far faster than any link to a guest.
var Ciphers = []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"}

// handshakeTimeout bounds the SSH handshake: qemu's port forward accepts
// a connection even when nothing in the guest answers it.
const handshakeTimeout = 15 * time.Second

// Connect opens an SSH connection as root to a guest agent at addr (a
// 127.0.0.1 forward, or a bridge-mode guest's own address), pinning hostKey (a SHA256 fingerprint; "" accepts the
// first key, for a guest whose console has not printed one yet).
func Connect(ctx context.Context, addr string, hostKey string, key ssh.Signer) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{
		Config: ssh.Config{Ciphers: Ciphers},
		User:   "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if hostKey != "" && ssh.FingerprintSHA256(k) != hostKey {
				return fmt.Errorf("the guest answered with host key %s, not the %s its console printed: refusing to connect", ssh.FingerprintSHA256(k), hostKey)
			}
			return nil
		},
	}
	for attempt := 1; ; attempt++ {
		c, err := handshake(ctx, addr, cfg)
		// The user-mode network accepts on the host's side before the
		// guest does, and resets when the guest refuses: seen twice in
		// hundreds of starts, right after a guest said it was ready.
		// Nothing was exchanged yet, so trying again is safe.
		if err == nil || attempt == resetAttempts || !errors.Is(err, syscall.ECONNRESET) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// resetAttempts bounds the handshakes Connect tries when the connection
// is reset.
const resetAttempts = 4

func handshake(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	nc.SetDeadline(time.Now().Add(handshakeTimeout))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ssh to %s: %w", addr, err)
	}
	nc.SetDeadline(time.Time{})
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
