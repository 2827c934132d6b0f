package hostnet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Egress modes.
const (
	// EgressOpen: the guest reaches anything outside; lookups are not
	// recorded.
	EgressOpen = "open"
	// EgressDeny: nothing outside, by name or address; every lookup is
	// NXDOMAIN.
	EgressDeny = "deny"
	// EgressAllow: only the listed names (and their subdomains where a
	// name starts with "*."), and only the addresses they resolved to.
	EgressAllow = "allow"
	// EgressLearn: anything, and every lookup's names and addresses are
	// recorded, for an allow list later (--egress from=VM).
	EgressLearn = "learn"
)

// Egress is a guest's egress policy.
type Egress struct {
	Mode  string
	Hosts []string
}

// maxHosts bounds an allow list: each name is a set of rules' worth of
// lookups, and the policy is stored with the VM.
const maxHosts = 256

// ParseEgress reads "open", "deny", "learn" or "allow=HOST[,HOST...]";
// "" is open. from=VM is the VM service's to resolve into an allow list.
func ParseEgress(s string) (Egress, error) {
	bad := func(why string) (Egress, error) {
		return Egress{}, fmt.Errorf("--egress %q: %s: %w", s, why, errdefs.ErrInvalid)
	}
	mode, hosts, hasHosts := strings.Cut(s, "=")
	switch mode {
	case "":
		return Egress{Mode: EgressOpen}, nil
	case EgressOpen, EgressDeny, EgressLearn:
		if hasHosts {
			return bad(mode + " takes no hosts")
		}
		return Egress{Mode: mode}, nil
	case EgressAllow:
	default:
		return bad("want open, deny, learn, allow=HOST[,HOST...] or from=VM")
	}
	e := Egress{Mode: EgressAllow}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		if h == "" {
			continue
		}
		if err := checkHost(h); err != nil {
			return bad(err.Error())
		}
		if !slices.Contains(e.Hosts, h) {
			e.Hosts = append(e.Hosts, h)
		}
	}
	if len(e.Hosts) == 0 {
		return bad("allow= names no host (deny allows none)")
	}
	if len(e.Hosts) > maxHosts {
		return bad(fmt.Sprintf("%d hosts, over %d", len(e.Hosts), maxHosts))
	}
	return e, nil
}

// CheckHost accepts a DNS name, optionally "*." before it, lower case.
func CheckHost(h string) error { return checkHost(h) }

// checkHost accepts a DNS name, optionally "*." before it.
func checkHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("%s is an address: name the host instead, so that DNS says which addresses it has", h)
	}
	if len(name) > 253 {
		return fmt.Errorf("host %.40q... is longer than a DNS name can be", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not a DNS name", h)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host %q is not a DNS name", h)
			}
		}
	}
	return nil
}

// String is the policy as it is given and stored.
func (e Egress) String() string {
	if e.Mode == EgressAllow {
		return EgressAllow + "=" + strings.Join(e.Hosts, ",")
	}
	if e.Mode == "" {
		return EgressOpen
	}
	return e.Mode
}

// Allows says whether a lookup of name (lower case, no final dot) is
// answered.
func (e Egress) Allows(name string) bool {
	switch e.Mode {
	case EgressDeny:
		return false
	case EgressAllow:
		for _, h := range e.Hosts {
			if sub, ok := strings.CutPrefix(h, "*."); ok {
				if strings.HasSuffix(name, "."+sub) {
					return true
				}
			} else if name == h {
				return true
			}
		}
		return false
	}
	return true
}

// Records says whether lookups under e are recorded: learn's, and
// allow's (whose addresses are what the guest may reach, kept across a
// daemon restart).
func (e Egress) Records() bool { return e.Mode == EgressLearn || e.Mode == EgressAllow }
