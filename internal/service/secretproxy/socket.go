package secretproxy

import (
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// socketFor carries a connection's bytes (an SSH channel's) through a
// socket pair and returns the pair's other end: net/http needs read
// deadlines to take a connection over (CONNECT), which an SSH channel
// does not have, and without them it waits for ever.
func socketFor(ch net.Conn) (net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket pair: %w", err)
	}
	ends := [2]net.Conn{}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "secrets-proxy")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				ends[0].Close()
			} else {
				unix.Close(fds[1])
			}
			return nil, fmt.Errorf("socket pair: %w", err)
		}
		ends[i] = c
	}
	near := ends[0].(*net.UnixConn)
	go func() {
		defer ch.Close()
		defer near.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(ch, near)
			if cw, ok := ch.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			close(done)
		}()
		io.Copy(near, ch)
		near.CloseWrite()
		<-done
	}()
	return ends[1], nil
}
