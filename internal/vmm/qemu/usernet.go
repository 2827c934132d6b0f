package qemu

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// User-mode network backends: what a guest without a tap reaches.
const (
	// NetAuto is passt where it can run, else NetIsolated.
	NetAuto = "auto"
	// NetPasst: passt (with --no-map-gw) carries the guest's traffic out
	// through sockets of its own; the guest reaches the outside network
	// but not the host's loopback. It needs a default route on the host.
	NetPasst = "passt"
	// NetIsolated: qemu's slirp with restrict=on; the guest reaches
	// nothing but its published ports answer.
	NetIsolated = "isolated"
	// NetSlirp: qemu's slirp as it comes; the guest reaches the outside
	// and, at 10.0.2.2, every service on the host's loopback.
	NetSlirp = "slirp"
)

// The guest's side of the user-mode network, the same under every backend
// so that a guest's static configuration never depends on the host; the
// agent sets it from the kernel command line (GuestParams).
const (
	GuestAddr    = "10.0.2.15/24"
	GuestGateway = "10.0.2.2"
	// GuestDNS is where the guest asks names: slirp answers there, and
	// passt forwards it to the host's resolver.
	GuestDNS = "10.0.2.3"
)

// PasstMTU is the guest's MTU under passt, the largest frame it sends.
const PasstMTU = 65520

// PasstBinary is the passt program.
const PasstBinary = "passt"

// netFD is the descriptor number qemu and passt find their ends of the
// socket pair at: the first of ExtraFiles.
const netFD = 3

// NetMode says which backend VMs get now, and why when it is not the one
// asked for: auto falls back to isolated, not to slirp, so that a missing
// passt never opens the host's loopback to guests.
func (d *Driver) NetMode() (mode, why string, err error) {
	asked := d.Options.UserNet
	if asked == "" {
		asked = NetAuto
	}
	if asked != NetAuto && asked != NetPasst {
		return asked, "", nil
	}
	cannot := ""
	if _, err := exec.LookPath(PasstBinary); err != nil {
		cannot = "passt is not installed (apt-get install passt)"
	} else if !hasDefaultRoute() {
		// passt derives its addresses from the host's default route and
		// refuses to start without one.
		cannot = "this host has no IPv4 default route, which passt needs"
	}
	switch {
	case cannot == "":
		return NetPasst, "", nil
	case asked == NetPasst:
		return "", "", fmt.Errorf("user_net = %q, but %s: %w", NetPasst, cannot, errdefs.ErrUnavailable)
	default:
		return NetIsolated, cannot + ": guests get no outside network", nil
	}
}

// Network implements vmm.Driver: what guests get, as one line.
func (d *Driver) Network() string {
	mode, why, err := d.NetMode()
	if err != nil {
		return err.Error()
	}
	s := mode + ": " + NetDescription(mode)
	if why != "" {
		s += " (" + why + ")"
	}
	return s
}

// NetDescription says what a guest reaches under mode.
func NetDescription(mode string) string {
	switch mode {
	case NetPasst:
		return "guests reach the outside network, not this host's loopback"
	case NetIsolated:
		return "guests reach nothing; published ports answer"
	case NetSlirp:
		return "guests reach the outside network and, at " + GuestGateway + ", every service on this host's loopback"
	}
	return mode
}

// hasDefaultRoute says whether this network namespace has an IPv4
// default route.
func hasDefaultRoute() bool {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// Iface Destination Gateway Flags ...; RTF_UP is 0x1.
		fl := strings.Fields(s.Text())
		if len(fl) > 3 && fl[1] == "00000000" {
			if flags, err := strconv.ParseUint(fl[3], 16, 32); err == nil && flags&1 != 0 {
				return true
			}
		}
	}
	return false
}

// PasstArgs is passt's command line for cfg: the guest's addresses fixed
// (not copied from the host), no mapping of the gateway to the host's
// loopback, IPv4 only, each forward bound to its address, and root
// dropped to runAs ("" leaves passt's own default).
func PasstArgs(cfg vmm.Config, runAs string) []string {
	gw := GuestGateway
	addr, bits, _ := strings.Cut(GuestAddr, "/")
	args := []string{
		"--fd", strconv.Itoa(netFD), "--foreground", "--quiet",
		"--no-map-gw", "--ipv4-only",
		"--address", addr, "--netmask", bits, "--gateway", gw,
		"--dns-forward", GuestDNS,
	}
	if runAs != "" {
		args = append(args, "--runas", runAs)
	}
	ports := map[string][]string{"--tcp-ports": nil, "--udp-ports": nil}
	for _, f := range cfg.Network.Forwards {
		flag := "--tcp-ports"
		if f.UDP {
			flag = "--udp-ports"
		}
		ports[flag] = append(ports[flag], fmt.Sprintf("%s/%d:%d", f.Addr(), f.HostPort, f.GuestPort))
	}
	for _, flag := range []string{"--tcp-ports", "--udp-ports"} {
		if len(ports[flag]) == 0 {
			ports[flag] = []string{"none"}
		}
		for _, spec := range ports[flag] {
			args = append(args, flag, spec)
		}
	}
	return args
}

// netdevArgs is qemu's network device for n: a tap it inherited, or the
// resolved user-mode backend.
func netdevArgs(n vmm.Network, o Options) []string {
	var netdev string
	switch {
	case n.Tap != "":
		// vhost needs /dev/vhost-net, which a dropped qemu cannot open.
		netdev = fmt.Sprintf("tap,id=net0,fd=%d,vhost=off", o.TapFD)
	case o.UserNet == NetPasst:
		netdev = fmt.Sprintf("stream,id=net0,server=off,addr.type=fd,addr.str=%d", netFD)
	default:
		netdev = "user,id=net0"
		if o.UserNet != NetSlirp {
			netdev += ",restrict=on"
		}
		for _, f := range n.Forwards {
			proto := "tcp"
			if f.UDP {
				proto = "udp"
			}
			netdev += fmt.Sprintf(",hostfwd=%s:%s:%d-:%d", proto, f.Addr(), f.HostPort, f.GuestPort)
		}
	}
	dev := "virtio-net-device,netdev=net0"
	if n.MAC != "" {
		dev += ",mac=" + n.MAC
	}
	return []string{"-netdev", netdev, "-device", dev}
}

// passt is a running passt process serving one VM.
type passt struct {
	cmd    *exec.Cmd
	exited chan error
	// vmEnd is qemu's end of the socket pair, closed once qemu has it.
	vmEnd *os.File
}

// startPasst starts passt for cfg on one end of a socket pair and returns
// once it listens on every forwarded port. passt exits by itself when
// qemu closes the other end: when qemu exits, however it ends, and when
// this daemon dies before qemu was started, as the daemon holds that end
// until then.
func startPasst(ctx context.Context, cfg vmm.Config, runAs string, log *os.File) (*passt, error) {
	path, err := exec.LookPath(PasstBinary)
	if err != nil {
		return nil, fmt.Errorf("passt is not installed (apt-get install passt): %w", errdefs.ErrUnavailable)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket pair for passt: %w", err)
	}
	for _, fd := range fds {
		setBuffers(fd)
	}
	vmEnd, passtEnd := os.NewFile(uintptr(fds[0]), "qemu-net"), os.NewFile(uintptr(fds[1]), "passt-net")
	defer passtEnd.Close()
	cmd := exec.Command(path, PasstArgs(cfg, runAs)...)
	cmd.ExtraFiles = []*os.File{passtEnd}
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session, as qemu's: it outlives a daemon restart with its
	// VM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		vmEnd.Close()
		return nil, fmt.Errorf("start passt: %w", err)
	}
	p := &passt{cmd: cmd, exited: make(chan error, 1), vmEnd: vmEnd}
	go func() { p.exited <- cmd.Wait() }()
	want := cfg.Network.Forwards
	for {
		if listening(want) {
			return p, nil
		}
		select {
		case err := <-p.exited:
			vmEnd.Close()
			return nil, fmt.Errorf("passt exited (%v): %s", err, readLog(cfg.Log))
		case <-ctx.Done():
			p.kill()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// netBuffer is the socket pair's buffer size each way. With the default
// (net.core.wmem_default, 208 KiB) passt's writes to qemu stall and a
// guest's download ran at 3.3 MiB/s against slirp's 24.2; with 4 MiB,
// 23.2 (bench/net.sh).
const netBuffer = 4 << 20

// setBuffers sizes a socket's buffers to netBuffer: past the host's
// limits (net.core.wmem_max) when root, within them otherwise.
func setBuffers(fd int) {
	for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], netBuffer) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], netBuffer)
		}
	}
}

// kill ends passt and closes qemu's end.
func (p *passt) kill() {
	p.cmd.Process.Kill()
	p.vmEnd.Close()
}

// listening says whether every forward's port is a listening TCP socket
// (a bound UDP one) on its address in this network namespace.
func listening(fws []vmm.Forward) bool {
	if len(fws) == 0 {
		return true
	}
	have := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/udp"} {
		b, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		for _, l := range strings.Split(string(b), "\n") {
			// sl local_address rem_address st ...; 0A is TCP's LISTEN, 07
			// UDP's unconnected (CLOSE).
			if f := strings.Fields(l); len(f) > 3 && (f[3] == "0A" && file == "/proc/net/tcp" || f[3] == "07" && file == "/proc/net/udp") {
				have[path.Base(file)+f[1]] = true
			}
		}
	}
	for _, f := range fws {
		ip, err := netip.ParseAddr(f.Addr())
		if err != nil || !ip.Is4() {
			return false
		}
		// /proc/net/tcp writes the address as the host-order word.
		a := ip.As4()
		proto := "tcp"
		if f.UDP {
			proto = "udp"
		}
		if !have[fmt.Sprintf("%s%02X%02X%02X%02X:%04X", proto, a[3], a[2], a[1], a[0], f.HostPort)] {
			return false
		}
	}
	return true
}
