// Package sshkey makes and keeps the ed25519 keys banger uses: the user's
// (made by the CLI), the daemon's own, and each guest's host key.
package sshkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Generate makes a new key and its private half in OpenSSH PEM form.
func Generate(comment string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	k, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return k, pem.EncodeToMemory(blk), nil
}

// LoadOrCreate returns the key at path, making it on first use with its
// public half beside it (PATH.pub), as ssh-keygen would.
func LoadOrCreate(path, comment string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("ssh key %s: %w (a passphrase-protected key cannot be used)", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	k, priv, err := Generate(comment)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create ssh key directory: %w", err)
	}
	if err := os.WriteFile(path+".pub", []byte(AuthorizedLine(k.PublicKey(), comment)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write ssh key: %w", err)
	}
	// O_EXCL: two processes racing on first use must not write two keys.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreate(path, comment)
	}
	if err != nil {
		return nil, fmt.Errorf("write ssh key: %w", err)
	}
	if _, err := f.Write(priv); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write ssh key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return k, nil
}

// AuthorizedLine renders a public key as one authorized_keys line.
func AuthorizedLine(k ssh.PublicKey, comment string) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}
