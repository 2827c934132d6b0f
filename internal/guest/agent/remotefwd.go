package agent

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"
)

// maxRemoteForwards bounds the listeners one connection may ask for.
const maxRemoteForwards = 8

// remoteForwards are one connection's tcpip-forward listeners (ssh -R):
// the host's proxy for secrets is reached this way, by a port on the
// guest's loopback whose every connection is a channel back to the host,
// so that the guest needs no network path to the host at all.
type remoteForwards struct {
	conn *ssh.ServerConn
	mu   sync.Mutex
	lns  map[string]net.Listener // by "addr:port" as asked
}

func newRemoteForwards(conn *ssh.ServerConn) *remoteForwards {
	f := &remoteForwards{conn: conn, lns: map[string]net.Listener{}}
	go func() {
		conn.Wait()
		f.closeAll()
	}()
	return f
}

type forwardSpec struct {
	Addr string
	Port uint32
}

// listen answers a tcpip-forward request: only on a loopback address,
// since nothing outside the guest is meant to reach the host through it.
func (f *remoteForwards) listen(payload []byte) (bool, []byte) {
	var spec forwardSpec
	if err := ssh.Unmarshal(payload, &spec); err != nil || spec.Port > 65535 {
		return false, nil
	}
	host := spec.Addr
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lns) >= maxRemoteForwards {
		return false, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(spec.Port))))
	if err != nil {
		return false, nil
	}
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	f.lns[fmt.Sprintf("%s:%d", spec.Addr, port)] = ln
	go f.serve(ln, spec.Addr, port)
	if spec.Port == 0 {
		return true, ssh.Marshal(struct{ Port uint32 }{port})
	}
	return true, nil
}

// cancel answers cancel-tcpip-forward.
func (f *remoteForwards) cancel(payload []byte) bool {
	var spec forwardSpec
	if ssh.Unmarshal(payload, &spec) != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fmt.Sprintf("%s:%d", spec.Addr, spec.Port)
	ln, ok := f.lns[key]
	if ok {
		ln.Close()
		delete(f.lns, key)
	}
	return ok
}

func (f *remoteForwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, ln := range f.lns {
		ln.Close()
		delete(f.lns, k)
	}
}

// serve opens a forwarded-tcpip channel to the client for each
// connection accepted on ln.
func (f *remoteForwards) serve(ln net.Listener, addr string, port uint32) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go f.carry(c, addr, port)
	}
}

func (f *remoteForwards) carry(c net.Conn, addr string, port uint32) {
	defer c.Close()
	origin := c.RemoteAddr().(*net.TCPAddr)
	ch, reqs, err := f.conn.OpenChannel("forwarded-tcpip", ssh.Marshal(struct {
		Addr       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}{addr, port, origin.IP.String(), uint32(origin.Port)}))
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(ch, c); ch.CloseWrite() }()
	go func() { defer wg.Done(); io.Copy(c, ch); c.(*net.TCPConn).CloseWrite() }()
	wg.Wait()
}
