// Package request checks what a VM request asks that needs no lookup:
// ports to publish, a disk size, durations, the record a tool keeps on
// its VM, and what this host can give (its memory, its free and
// unprivileged ports), so that bad input fails before any work starts.
package request

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/units"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Duration parses a request's timeout; "" is def. Zero is allowed only
// where it means something (stop: kill at once).
func Duration(t string, def time.Duration, zeroOK bool) (time.Duration, error) {
	if t == "" {
		return def, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 || d == 0 && !zeroOK {
		return 0, fmt.Errorf("timeout %q: give a duration such as 30s or 5m: %w", t, errdefs.ErrInvalid)
	}
	return d, nil
}

func Disk(s string) (int64, error) {
	n, err := units.ParseSize(s, units.MiB)
	if err != nil {
		return 0, fmt.Errorf("--disk: %w", err)
	}
	if n < 64<<20 {
		return 0, fmt.Errorf("--disk %s is too small: at least 64M: %w", s, errdefs.ErrInvalid)
	}
	return n, nil
}

// Port parses "[HOSTIP:]HOST:GUEST[/udp]" (or "PORT" for the same on
// both sides); without HOSTIP the port is published on 127.0.0.1 only.
func Port(spec string) (api.PortForward, error) {
	bad := func(why string) (api.PortForward, error) {
		return api.PortForward{}, fmt.Errorf("-p %q: %s: %w", spec, why, errdefs.ErrInvalid)
	}
	addrs, proto, hasProto := strings.Cut(spec, "/")
	switch {
	case !hasProto, proto == "tcp":
		proto = ""
	case proto == "udp":
	default:
		return bad("the protocol after / is tcp or udp")
	}
	parts := strings.Split(addrs, ":")
	var ip string
	switch len(parts) {
	case 1:
		parts = append(parts, parts[0])
	case 2:
	case 3:
		ip, parts = parts[0], parts[1:]
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return bad("want [HOSTIP:]HOST:GUEST with HOSTIP an IPv4 address of this host, such as 127.0.0.1 or 0.0.0.0 for every one")
		}
		ip = a.String()
		if ip == "127.0.0.1" {
			ip = ""
		}
	default:
		return bad("want [HOSTIP:]HOST:GUEST[/udp], like 8080:80 or 0.0.0.0:8080:80 (IPv4 only)")
	}
	hp, err1 := strconv.Atoi(parts[0])
	gp, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || hp < 1 || hp > 65535 || gp < 1 || gp > 65535 {
		return bad("want [HOSTIP:]HOST:GUEST, two ports between 1 and 65535 (like 8080:80, or 5353:53/udp)")
	}
	return api.PortForward{HostIP: ip, HostPort: hp, GuestPort: gp, Proto: proto}, nil
}

// UnprivilegedPortStart is the lowest port a process without root may
// bind (net.ipv4.ip_unprivileged_port_start, 1024 unless changed).
func UnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// MadeBy checks the record a tool asks to keep on its VM: it is shown
// by vm ls and vm show, so it must be short and printable.
func MadeBy(m *api.MadeBy) error {
	if m == nil {
		return nil
	}
	if err := names.Validate("tool", m.Tool); err != nil {
		return fmt.Errorf("made_by: %w", err)
	}
	c := m.Checkout
	if c == "" {
		return nil
	}
	if err := names.Label("made_by: checkout", c); err != nil {
		return err
	}
	if !filepath.IsAbs(c) || filepath.Clean(c) != c {
		return fmt.Errorf("made_by: checkout %q is not a clean absolute path: %w", c, errdefs.ErrInvalid)
	}
	return nil
}

// FreePort returns a 127.0.0.1 TCP port nobody listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PortFree says whether port can be bound on 127.0.0.1.
func PortFree(ip string, port int) bool {
	ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// HostMemoryMB is MemTotal from /proc/meminfo, 0 if unknown.
func HostMemoryMB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb / 1024
		}
	}
	return 0
}
