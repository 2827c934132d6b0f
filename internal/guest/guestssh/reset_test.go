package guestssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A guest whose network resets the first connections (as the user-mode
// network does when the guest refuses) is reached on a later try.
func TestConnectRetriesAReset(t *testing.T) {
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := ssh.NewSignerFromKey(hostPriv)
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	user, _ := ssh.NewSignerFromKey(userPriv)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(host)
	for _, resets := range []int{2, resetAttempts} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for n := 0; ; n++ {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if n < resets {
					c.(*net.TCPConn).SetLinger(0) // close with RST
					c.Close()
					continue
				}
				go func() {
					if sc, chans, reqs, err := ssh.NewServerConn(c, cfg); err == nil {
						go ssh.DiscardRequests(reqs)
						for nc := range chans {
							nc.Reject(ssh.Prohibited, "no")
						}
						sc.Close()
					}
				}()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := Connect(ctx, ln.Addr().String(), ssh.FingerprintSHA256(host.PublicKey()), user)
		cancel()
		ln.Close()
		if resets < resetAttempts {
			if err != nil {
				t.Errorf("after %d resets: %v", resets, err)
			} else {
				c.Close()
			}
		} else if err == nil {
			t.Errorf("%d resets: connected, want the reset reported", resets)
		}
	}
}
