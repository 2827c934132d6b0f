package hostnet

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/service/hostnet/nftrules"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

// GuardTable names banger's table that keeps user-mode guests off the
// host: the sockets of a user-mode network's process (passt, or qemu's
// own slirp) run as the VM's uid, from banger's VMM range, so the table
// filters what those uids send, and nothing of anyone else's.
const GuardTable = nftrules.GuardTable

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
	// Store records what user-mode guests' lookups resolve; Upstream is
	// where their questions go ("ADDR:PORT"; "" the host's first
	// nameserver).
	Store    *store.Store
	Upstream string
	Log      *slog.Logger
	// Activity gets each guest's lookups (nil: not recorded).
	Activity Recorder

	mu   sync.Mutex
	last string
	// users are the user-mode VMs whose egress is not open, by name.
	users map[string]*userGuest
}

// userGuest is a running user-mode VM under an egress policy: its VMM's
// uid (its passt's too), the DNS listener its lookups are sent to, and
// what an allow list opened.
type userGuest struct {
	spec    Spec
	uid     uint32
	port    uint16
	dns     *forwarder
	allowed map[netip.Addr]bool
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
	if err := g.writeLocked(r); err != nil {
		return err
	}
	g.Log.Info("guests kept off the host", "connected", r.connected, "open", g.Open, "resolvers", r.resolvers)
	return nil
}

// writeLocked writes the table for r and the user-mode guests; g.mu is
// held.
func (g *Guard) writeLocked(r guardRules) error {
	if err := writeTables("write nftables table "+GuardTable, g.table(r).Table()); err != nil {
		return err
	}
	g.last = r.String()
	return nil
}

// table is what the guard's table is made of for r and the user-mode
// guests, in the order of their names; g.mu is held.
func (g *Guard) table(r guardRules) nftrules.Guard {
	t := nftrules.Guard{UIDFrom: g.UIDFrom, UIDCount: g.UIDCount, Connected: r.connected, Open: g.Open, Resolvers: r.resolvers}
	for _, u := range g.sortedUsers() {
		t.Users = append(t.Users, nftrules.User{VM: u.spec.VM, ID: u.spec.ID, UID: u.uid, DNSPort: u.port,
			Egress: egressRules(u.spec.Egress), Allowed: slices.Collect(maps.Keys(u.allowed))})
	}
	return t
}

func (g *Guard) sortedUsers() []*userGuest {
	var us []*userGuest
	for _, u := range g.users {
		us = append(us, u)
	}
	slices.SortFunc(us, func(a, b *userGuest) int { return strings.Compare(a.spec.VM, b.spec.VM) })
	return us
}

// AttachUser puts a started user-mode VM, whose VMM (and passt) run as
// uid, under its egress policy: its lookups go to a DNS listener of its
// own on 127.0.0.1, answered and recorded as the policy says, and what
// it sends is held to the policy. An open policy needs nothing; detach
// undoes it all.
func (g *Guard) AttachUser(ctx context.Context, spec Spec, uid uint32) error {
	if spec.Egress.Mode == EgressOpen {
		return nil
	}
	r, err := g.rules()
	if err != nil {
		return err
	}
	u := &userGuest{spec: spec, uid: uid, allowed: map[netip.Addr]bool{}}
	if spec.Egress.Mode == EgressAllow {
		// Addresses recorded before a daemon restart open the set again,
		// the public ones only.
		rs, err := g.Store.ResolvedBy(ctx, spec.VM)
		if err != nil {
			return err
		}
		var addrs []netip.Addr
		for _, x := range rs {
			if a, err := netip.ParseAddr(x.Addr); err == nil && spec.Egress.Allows(x.Name) {
				addrs = append(addrs, a)
			}
		}
		open, _, err := g.public().split(addrs)
		if err != nil {
			return err
		}
		for _, a := range open {
			u.allowed[a] = true
		}
	}
	if u.dns, u.port, err = g.listen(u); err != nil {
		return fmt.Errorf("vm %s: %w", spec.VM, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.users == nil {
		g.users = map[string]*userGuest{}
	}
	if old := g.users[spec.VM]; old != nil {
		old.dns.close()
	}
	g.users[spec.VM] = u
	if err := g.writeLocked(r); err != nil {
		delete(g.users, spec.VM)
		u.dns.close()
		return err
	}
	g.Log.Info("user-mode vm under its egress policy", "vm", spec.VM, "uid", uid, "egress", spec.Egress.String(), "dns", u.port)
	return nil
}

// DetachUser takes a VM that stopped off its policy's rules and closes
// its DNS listener; a VM that is not attached is no error.
func (g *Guard) DetachUser(vm string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u, ok := g.users[vm]
	if !ok {
		return
	}
	u.dns.close()
	delete(g.users, vm)
	r, err := g.rules()
	if err == nil {
		err = g.writeLocked(r)
	}
	if err != nil {
		g.Log.Warn("rewrite the guard table", "vm", vm, "err", err)
	}
}

// Resolved returns what a VM's lookups resolved.
func (g *Guard) Resolved(ctx context.Context, vm string) ([]api.Resolved, error) {
	return g.Store.ResolvedBy(ctx, vm)
}

// Forget drops what a removed VM's lookups resolved.
func (g *Guard) Forget(ctx context.Context, vm string) error {
	return g.Store.DeleteLease(ctx, vm)
}

func (g *Guard) public() publicFilter {
	return publicFilter{subnet: g.Exclude, open: g.Open, own: hostAddrs}
}

// listen serves u's lookups on a port of its own on 127.0.0.1, UDP and
// TCP: the port says which VM asks, as the address does on the bridge.
func (g *Guard) listen(u *userGuest) (*forwarder, uint16, error) {
	up := g.Upstream
	if up == "" {
		up = systemResolver()
	}
	h := &resolver{
		guest:    func(netip.Addr) (Spec, bool) { return u.spec, true },
		allow:    g.allowUser,
		record:   g.Store.RecordResolved,
		log:      g.Log,
		upstream: up,
		public:   g.public(),
		activity: g.Activity,
	}
	var err error
	for range 10 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			continue
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, lerr := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if lerr != nil {
			pc.Close()
			err = lerr
			continue // the port is taken for TCP: another
		}
		f := &forwarder{udp: &dns.Server{PacketConn: pc, Handler: h}, tcp: &dns.Server{Listener: ln, Handler: h}}
		go f.udp.ActivateAndServe()
		go f.tcp.ActivateAndServe()
		return f, uint16(port), nil
	}
	return nil, 0, fmt.Errorf("a DNS listener on 127.0.0.1: %w", err)
}

// allowUser opens a user-mode VM's set to addrs.
func (g *Guard) allowUser(vm string, addrs []netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	u, ok := g.users[vm]
	if !ok {
		return nil
	}
	return openSet(GuardTable, u.spec, u.allowed, addrs)
}

// DropGuard drops the guard's table if there is one; where there is
// none it writes nothing.
func DropGuard() error {
	c, err := newConn()
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
		var open bool
		select {
		case <-ctx.Done():
			return
		case _, open = <-routes:
		case _, open = <-addrs:
		}
		if !open {
			// netlink closes a subscription it lost: say so, rather than
			// spin on a closed channel.
			if ctx.Err() == nil {
				g.Log.Warn("the watch of the host's routes and addresses ended: the guard is rewritten at the next daemon start")
			}
			return
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
