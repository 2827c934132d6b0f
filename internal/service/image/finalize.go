package image

import (
	"fmt"
	"os"
	"strings"

	"github.com/banger-dev/banger/internal/format/flatten"
)

// Finalize says what banger puts into every image so that it boots under
// banger: its own directory, the guest agent as init, the network basics
// and the SSH keys. The VM side uses the same helper for per-VM values.
type Finalize struct {
	Hostname string
	// Nameserver is the DNS server the guest uses; qemu's user network
	// answers at 10.0.2.3.
	Nameserver string
	// AuthorizedKeys are public key lines for root.
	AuthorizedKeys []string
	// Agent is the guest agent binary on the host, injected as
	// /.banger/init when set.
	Agent string
}

// BangerDir is where banger's own files live inside a guest.
const BangerDir = "/.banger/"

// Extras lists the files to add to a root file system.
func (f Finalize) Extras() ([]flatten.Extra, error) {
	host := f.Hostname
	if host == "" {
		host = "banger"
	}
	ns := f.Nameserver
	if ns == "" {
		ns = "10.0.2.3"
	}
	out := []flatten.Extra{
		{Path: BangerDir, Mode: 0o755},
		{Path: "/etc/hostname", Mode: 0o644, Body: []byte(host + "\n")},
		{Path: "/etc/hosts", Mode: 0o644, Body: []byte(fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host))},
		{Path: "/etc/resolv.conf", Mode: 0o644, Body: []byte("nameserver " + ns + "\n")},
	}
	if f.Agent != "" {
		b, err := os.ReadFile(f.Agent)
		if err != nil {
			return nil, fmt.Errorf("guest agent: %w", err)
		}
		out = append(out, flatten.Extra{Path: BangerDir + "init", Mode: 0o755, Body: b})
	}
	if len(f.AuthorizedKeys) > 0 {
		var keys strings.Builder
		for _, k := range f.AuthorizedKeys {
			keys.WriteString(strings.TrimSpace(k) + "\n")
		}
		out = append(out,
			flatten.Extra{Path: "/root/", Mode: 0o700},
			flatten.Extra{Path: "/root/.ssh/", Mode: 0o700},
			flatten.Extra{Path: "/root/.ssh/authorized_keys", Mode: 0o600, Body: []byte(keys.String())},
		)
	}
	return out, nil
}
