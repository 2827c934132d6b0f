package hostnet

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// GuardTable names banger's table that keeps user-mode guests off the
// host: the sockets of a user-mode network's process (passt, or qemu's
// own slirp) run as the VM's uid, from banger's VMM range, so the table
// filters what those uids send, and nothing of anyone else's.
const GuardTable = "banger-guard"

// Off-limits to guests whatever their network: link-local (a cloud's
// metadata service, which hands out credentials, lives there), loopback
// and multicast.
var offLimits = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
}

// Guard keeps user-mode guests from the host's own addresses (every one:
// the kernel's fib says which), link-local and loopback ranges, and the
// networks the host is directly connected to (its LAN), unless Open
// names them. Replies to connections made to the guest (its SSH and
// published ports) pass; so does DNS to the host's resolvers, which
// passt forwards the guest's questions to.
type Guard struct {
	// UIDFrom and UIDCount are the VMMs' uids.
	UIDFrom, UIDCount uint32
	// Open are networks guests may reach although the host is connected
	// to them (guest_lan: a package mirror on the LAN).
	Open []netip.Prefix
	// Exclude is left out of the connected networks (the bridge's subnet,
	// which bridge mode's own table governs).
	Exclude netip.Prefix
	// Resolv is the resolver configuration read for DNS servers
	// ("/etc/resolv.conf").
	Resolv string
	Log    *slog.Logger

	mu   sync.Mutex
	last string
}

// guardRules is what the table holds, from the host's state now.
type guardRules struct {
	connected []netip.Prefix
	resolvers []netip.Addr
}

func (r guardRules) String() string { return fmt.Sprint(r.connected, r.resolvers) }

// Connected lists the IPv4 networks the host's main routing table reaches
// directly (no gateway), but exclude.
func Connected(exclude netip.Prefix) ([]netip.Prefix, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil || r.Gw != nil || r.Dst.IP.IsUnspecified() {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		p := netip.PrefixFrom(a, ones).Masked()
		if exclude.IsValid() && exclude.Overlaps(p) {
			continue
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Resolvers reads the IPv4 nameservers of a resolv.conf.
func Resolvers(path string) []netip.Addr {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Addr
	s := bufio.NewScanner(f)
	for s.Scan() {
		fl := strings.Fields(s.Text())
		if len(fl) >= 2 && fl[0] == "nameserver" {
			if a, err := netip.ParseAddr(fl[1]); err == nil && a.Is4() {
				out = append(out, a)
			}
		}
	}
	return out
}

func (g *Guard) rules() (guardRules, error) {
	c, err := Connected(g.Exclude)
	if err != nil {
		return guardRules{}, err
	}
	return guardRules{connected: c, resolvers: Resolvers(g.Resolv)}, nil
}

// Apply writes the guard's table anew from the host's state now; it does
// nothing when that state has not changed since the last write.
func (g *Guard) Apply() error {
	r, err := g.rules()
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.String() == g.last {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	g.write(c, r)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table %s: %w", GuardTable, err)
	}
	g.last = r.String()
	g.Log.Info("guests kept off the host", "connected", r.connected, "open", g.Open, "resolvers", r.resolvers)
	return nil
}

func (g *Guard) write(c *nftables.Conn, r guardRules) {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: GuardTable}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	guard := c.AddChain(&nftables.Chain{Name: "guests", Table: t})
	rule := func(ch *nftables.Chain, parts ...[]expr.Any) { addRule(c, t, ch, parts...) }

	// Only the VMMs' uids: meta skuid is host-endian, compared as a
	// big-endian range.
	from, to := g.UIDFrom, g.UIDFrom+g.UIDCount-1
	rule(out, []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binaryutil.BigEndian.PutUint32(from), ToData: binaryutil.BigEndian.PutUint32(to)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: guard.Name},
	})
	// Replies to what reached the guest (its SSH, its published ports).
	rule(guard, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	for _, a := range r.resolvers {
		for _, udp := range []bool{true, false} {
			rule(guard, addr(16, a), l4(udp), dport(53), verdict(expr.VerdictAccept))
		}
	}
	for _, p := range g.Open {
		rule(guard, inPrefix(16, p), verdict(expr.VerdictAccept))
	}
	refuse(rule, guard, fibLocal())
	for _, p := range append(slices.Clone(offLimits), r.connected...) {
		refuse(rule, guard, inPrefix(16, p))
	}
}

// DropGuard drops the guard's table if there is one; where there is
// none it writes nothing.
func DropGuard() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.Name == GuardTable {
			c.DelTable(t)
			return c.Flush()
		}
	}
	return nil
}

// Watch writes the table again whenever the host's addresses or routes
// change (a new LAN, a VPN up), until ctx ends; a change is applied
// within a second.
func (g *Guard) Watch(ctx context.Context) {
	routes, addrs := make(chan netlink.RouteUpdate, 16), make(chan netlink.AddrUpdate, 16)
	done := make(chan struct{})
	go func() { <-ctx.Done(); close(done) }()
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		g.Log.Warn("watch the host's routes: the guard is not kept up to date", "err", err)
		return
	}
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		g.Log.Warn("watch the host's addresses: the guard is not kept up to date", "err", err)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-routes:
		case <-addrs:
		}
		// A change comes as a burst of updates: apply once after it.
		time.Sleep(200 * time.Millisecond)
		for len(routes) > 0 || len(addrs) > 0 {
			select {
			case <-routes:
			case <-addrs:
			}
		}
		if err := g.Apply(); err != nil {
			g.Log.Error("keep guests off the host", "err", err)
		}
	}
}
