package vm

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/units"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
	"golang.org/x/crypto/ssh"
)

// Bounds on what a VM may ask for.
const (
	MinMemoryMB = 128
	// MaxKeysBytes bounds a VM's authorized keys, which travel on the
	// kernel command line (2048 bytes on x86, base64 adds a third): a
	// dozen ed25519 keys, or one RSA key of up to 4096 bits.
	MaxKeysBytes = 1024
)

// params are a create request's checked values.
type params struct {
	cpus         int
	memoryMB     int
	disk         int64 // 0: the image's size
	ports        []api.PortForward
	keys         []string
	readyTimeout time.Duration
	network      string
	egress       string
}

// checkParams validates everything in a create request that needs no
// lookup, so that bad input fails before any work starts.
func (s *Service) checkParams(req api.VMCreateRequest) (params, error) {
	p := params{cpus: req.CPUs, memoryMB: req.MemoryMB}
	if p.cpus == 0 {
		p.cpus = s.d.Defaults.CPUs
	}
	if p.memoryMB == 0 {
		p.memoryMB = s.d.Defaults.MemoryMB
	}
	if p.cpus < 1 || p.cpus > runtime.NumCPU() {
		return p, fmt.Errorf("--cpus %d: a VM needs between 1 and %d CPUs on this host: %w", p.cpus, runtime.NumCPU(), errdefs.ErrInvalid)
	}
	if p.memoryMB < MinMemoryMB {
		return p, fmt.Errorf("--memory %d MiB is too little: a VM needs at least %d MiB: %w", p.memoryMB, MinMemoryMB, errdefs.ErrInvalid)
	}
	if total := hostMemoryMB(); total > 0 && p.memoryMB > total {
		return p, fmt.Errorf("--memory %d MiB is more than this host has (%d MiB): %w", p.memoryMB, total, errdefs.ErrInvalid)
	}
	if req.Disk != "" {
		n, err := parseDisk(req.Disk)
		if err != nil {
			return p, err
		}
		p.disk = n
	}
	seen := map[string]bool{}
	for _, spec := range req.Ports {
		f, err := ParsePort(spec)
		if err != nil {
			return p, err
		}
		if seen[f.Proto+strconv.Itoa(f.HostPort)] {
			return p, fmt.Errorf("-p %s: host port %d is published twice: %w", spec, f.HostPort, errdefs.ErrInvalid)
		}
		seen[f.Proto+strconv.Itoa(f.HostPort)] = true
		p.ports = append(p.ports, f)
	}
	size := 0
	for _, k := range req.AuthorizedKeys {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return p, fmt.Errorf("authorized key %.40q: %v: %w", k, err, errdefs.ErrInvalid)
		}
		// Comments and options dropped: only the key counts.
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		size += len(line) + 1
		p.keys = append(p.keys, line)
	}
	if size > MaxKeysBytes {
		return p, fmt.Errorf("%d authorized keys take %d bytes, over the %d the kernel command line leaves them: use fewer keys, or ed25519 ones (ssh_public_keys in the config bakes keys into images instead): %w", len(p.keys), size, MaxKeysBytes, errdefs.ErrInvalid)
	}
	var err error
	if p.readyTimeout, err = s.timeout(req.ReadyTimeout); err != nil {
		return p, err
	}
	return p, nil
}

func (s *Service) timeout(t string) (time.Duration, error) {
	return duration(t, s.d.Defaults.ReadyTimeout, false)
}

// duration parses a request's timeout; "" is def. Zero is allowed only
// where it means something (stop: kill at once).
func duration(t string, def time.Duration, zeroOK bool) (time.Duration, error) {
	if t == "" {
		return def, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 || d == 0 && !zeroOK {
		return 0, fmt.Errorf("timeout %q: give a duration such as 30s or 5m: %w", t, errdefs.ErrInvalid)
	}
	return d, nil
}

func parseDisk(s string) (int64, error) {
	n, err := units.ParseSize(s, units.MiB)
	if err != nil {
		return 0, fmt.Errorf("--disk: %w", err)
	}
	if n < 64<<20 {
		return 0, fmt.Errorf("--disk %s is too small: at least 64M: %w", s, errdefs.ErrInvalid)
	}
	return n, nil
}

// ParsePort parses "[HOSTIP:]HOST:GUEST[/udp]" (or "PORT" for the same on
// both sides); without HOSTIP the port is published on 127.0.0.1 only.
func ParsePort(spec string) (api.PortForward, error) {
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

// unprivilegedPortStart is the lowest port a process without root may
// bind (net.ipv4.ip_unprivileged_port_start, 1024 unless changed).
func unprivilegedPortStart() int {
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
