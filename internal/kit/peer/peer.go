// Package peer carries the credentials of the process at the other end of
// the daemon's socket (SO_PEERCRED) in a request's context: the root
// daemon acts for callers who are not root, and grants them nothing they
// could not do themselves.
package peer

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
)

type peerKey struct{}

// unknown stands for a caller whose credentials could not be read: no
// uid, so never root.
var unknown = unix.Ucred{Uid: ^uint32(0), Gid: ^uint32(0)}

// ConnContext records the credentials of the process at the other end of
// a unix socket connection (SO_PEERCRED), for http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return NewContext(ctx, unknown)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return NewContext(ctx, unknown)
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return NewContext(ctx, unknown)
	}
	return NewContext(ctx, *cred)
}

// NewContext returns ctx carrying cred as its caller's credentials.
func NewContext(ctx context.Context, cred unix.Ucred) context.Context {
	return context.WithValue(ctx, peerKey{}, cred)
}

// Of returns the credentials of the client a request came from.
func Of(ctx context.Context) (unix.Ucred, bool) {
	c, ok := ctx.Value(peerKey{}).(unix.Ucred)
	return c, ok
}

// Root says whether ctx's caller is root. A context without a caller (a
// call from inside the daemon) counts as root: only the socket's callers
// are limited.
func Root(ctx context.Context) bool {
	c, ok := Of(ctx)
	return !ok || c.Uid == 0
}

// UID returns the uid of ctx's caller: 0 for a call from inside the
// daemon, which acts as root.
func UID(ctx context.Context) uint32 {
	c, ok := Of(ctx)
	if !ok {
		return 0
	}
	return c.Uid
}

// Owns says whether ctx's caller may see and act on what owner made:
// root (and the daemon itself) on everything, anyone else on its own.
func Owns(ctx context.Context, owner uint32) bool {
	return Root(ctx) || UID(ctx) == owner
}

// AsUID returns ctx carrying a caller with uid (and the same gid): what
// the daemon does on a user's behalf, and tests of who sees what.
func AsUID(ctx context.Context, uid uint32) context.Context {
	return NewContext(ctx, unix.Ucred{Uid: uid, Gid: uid})
}
