package secretproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// wrappedConn is a guest connection that first returns bytes already read
// from it (pre) and tells, by done, when it has been closed: the
// http.Servers serving it return only then.
type wrappedConn struct {
	net.Conn
	pre  []byte
	once sync.Once
	done chan struct{}
}

func newWrappedConn(c net.Conn, pre []byte) *wrappedConn {
	return &wrappedConn{Conn: c, pre: pre, done: make(chan struct{})}
}

func (c *wrappedConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *wrappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

func (c *wrappedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// oneConnListener hands its connection to http.Server.Serve, then blocks
// until done: Serve returns when the connection is over.
type oneConnListener struct {
	mu   sync.Mutex
	c    net.Conn
	done <-chan struct{}
	addr net.Addr
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	if c != nil {
		l.addr = c.LocalAddr()
	}
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error { return nil }

func (l *oneConnListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addr == nil && l.c != nil {
		return l.c.LocalAddr()
	}
	return l.addr
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// splice copies both ways between the guest and the server until both
// directions end, or neither moves for idle. An end of stream is passed on
// as a half-close where the connection allows it, so a request-then-
// response protocol that shuts its sending side still gets its answer.
func splice(guest, server net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(server, guest, idle, &last) }()
	go func() { defer wg.Done(); pipe(guest, server, idle, &last) }()
	wg.Wait()
	guest.Close()
	server.Close()
}

// pipe copies src to dst. A direction that waits on a reader while the
// other one moves is not idle: its deadline is pushed on rather than
// tearing the tunnel down mid-download.
func pipe(dst, src net.Conn, idle time.Duration, last *atomic.Int64) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var set time.Time
	for {
		now := time.Now()
		// Deadlines are moved at most once a second: cheap enough per read,
		// but there is no need to do it per read.
		if now.Sub(set) > time.Second {
			src.SetReadDeadline(now.Add(idle))
			dst.SetWriteDeadline(now.Add(idle))
			set = now
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				// The other side is gone: nothing more can be delivered either way.
				src.Close()
				dst.Close()
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
			set = time.Time{}
			continue
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return
			}
		}
		src.Close()
		dst.Close()
		return
	}
}
