package server

import (
	"context"
	"net"
	"net/http"

	"golang.org/x/sys/unix"
)

type peerKey struct{}

// ConnContext records the credentials of the process at the other end of
// a unix socket connection (SO_PEERCRED), for http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, *cred)
}

// PeerOf returns the credentials of the client a request came from.
func PeerOf(ctx context.Context) (unix.Ucred, bool) {
	c, ok := ctx.Value(peerKey{}).(unix.Ucred)
	return c, ok
}

// statusWriter remembers the status a handler sent, for the audit line;
// streams still flush through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
