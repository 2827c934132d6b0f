package vm

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/service/vm/request"
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
	if total := request.HostMemoryMB(); total > 0 && p.memoryMB > total {
		return p, fmt.Errorf("--memory %d MiB is more than this host has (%d MiB): %w", p.memoryMB, total, errdefs.ErrInvalid)
	}
	if req.Disk != "" {
		n, err := request.Disk(req.Disk)
		if err != nil {
			return p, err
		}
		p.disk = n
	}
	seen := map[string]bool{}
	for _, spec := range req.Ports {
		f, err := request.Port(spec)
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
	return request.Duration(t, s.d.Defaults.ReadyTimeout, false)
}
