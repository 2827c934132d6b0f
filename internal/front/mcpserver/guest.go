package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/wire/api"
)

// conns keeps one SSH connection per running VM: an agent's calls come
// one after another, and a new handshake each time would cost more than
// a short command takes.
type conns struct {
	mu sync.Mutex
	m  map[string]*guestConn // by VM name; guarded by mu
}

// guestConn is a connection to one boot of a VM: a restarted VM has
// another PID (and maybe host key), so it gets a new connection.
type guestConn struct {
	pid     int
	hostKey string
	port    int
	c       *ssh.Client
}

func newConns() *conns { return &conns{m: map[string]*guestConn{}} }

func (gc *guestConn) matches(v api.VM) bool {
	return gc.pid == v.PID && gc.hostKey == v.HostKey && gc.port == v.SSHPort
}

// get returns a connection to v's current boot, dialing when needed.
func (cs *conns) get(ctx context.Context, v api.VM, key ssh.Signer) (*ssh.Client, error) {
	cs.mu.Lock()
	gc := cs.m[v.Name]
	if gc != nil && !gc.matches(v) {
		gc.c.Close()
		delete(cs.m, v.Name)
		gc = nil
	}
	cs.mu.Unlock()
	if gc != nil {
		return gc.c, nil
	}
	c, err := guestssh.Dial(ctx, v, key)
	if err != nil {
		return nil, err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if old := cs.m[v.Name]; old != nil && old.matches(v) {
		// Another call dialed meanwhile: keep one.
		c.Close()
		return old.c, nil
	}
	cs.m[v.Name] = &guestConn{pid: v.PID, hostKey: v.HostKey, port: v.SSHPort, c: c}
	return c, nil
}

// drop forgets v's connection after it failed.
func (cs *conns) drop(name string, c *ssh.Client) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if gc := cs.m[name]; gc != nil && gc.c == c {
		delete(cs.m, name)
	}
	c.Close()
}

func (cs *conns) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for n, gc := range cs.m {
		gc.c.Close()
		delete(cs.m, n)
	}
}

// errStale marks a failure to open a session or SFTP on a kept
// connection: nothing ran in the guest, so one more try on a new
// connection is safe.
var errStale = errors.New("connection to the guest is unusable")

// withConn runs fn with a connection to v; a kept connection that has
// gone stale (the link dropped, the agent restarted) is replaced once.
func (s *Server) withConn(ctx context.Context, v api.VM, fn func(*ssh.Client) error) error {
	for attempt := 0; ; attempt++ {
		c, err := s.conns.get(ctx, v, s.o.Key)
		if err != nil {
			return err
		}
		err = fn(c)
		if errors.Is(err, errStale) {
			s.conns.drop(v.Name, c)
			if attempt == 0 {
				continue
			}
		}
		return err
	}
}

// withSFTP runs fn with an SFTP client on v.
func (s *Server) withSFTP(ctx context.Context, v api.VM, fn func(*sftp.Client) error) error {
	return s.withConn(ctx, v, func(c *ssh.Client) error {
		sc, err := sftp.NewClient(c)
		if err != nil {
			return fmt.Errorf("open sftp to vm %s: %w: %w", v.Name, errStale, err)
		}
		defer sc.Close()
		return fn(sc)
	})
}

// forget closes and drops a removed VM's connection.
func (cs *conns) forget(name string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if gc := cs.m[name]; gc != nil {
		gc.c.Close()
		delete(cs.m, name)
	}
}
