package vm

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guestproto"
	"github.com/banger-dev/banger/internal/store"
)

// powerOff asks the guest agent, over SSH with the daemon's key, to power
// the guest off cleanly. It does not wait for the guest to go.
func (s *Service) powerOff(ctx context.Context, v store.VM) error {
	if s.d.Key == nil || v.SSHPort == 0 {
		return fmt.Errorf("no way to reach the guest agent")
	}
	want := v.HostKey
	cfg := &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(s.d.Key)}, Timeout: 5 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if want != "" && ssh.FingerprintSHA256(key) != want {
				return fmt.Errorf("guest host key %s is not the one its console printed (%s)", ssh.FingerprintSHA256(key), want)
			}
			return nil
		},
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nc, err := d.DialContext(dctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(v.SSHPort)))
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, "127.0.0.1", cfg)
	if err != nil {
		return err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	ok, _, err := client.SendRequest(guestproto.PowerOffRequest, true, nil)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the guest agent refused to power off (an older agent?)")
	}
	return nil
}

// authorizedLine renders a public key as an authorized_keys line.
func authorizedLine(k ssh.PublicKey) string {
	return string(ssh.MarshalAuthorizedKey(k))[:len(ssh.MarshalAuthorizedKey(k))-1] + " banger-daemon"
}
