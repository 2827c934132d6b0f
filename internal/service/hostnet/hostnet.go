// Package hostnet is the HostNetwork service: banger's bridge, a tap per
// bridge-mode VM, their address leases (in the store), banger's own
// nftables tables (NAT out, published ports, each guest's egress policy)
// and the DNS forwarder on the bridge's address that enforces and learns
// egress by name. Every change it makes to the host is under banger's
// names (the bridge, taps named TapPrefix..., the tables named TableName),
// so that a reconcile can tell its own from the rest and undo it.
package hostnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// TapPrefix starts the name of every tap banger makes; the rest is the
// VM's ID.
const TapPrefix = "bg-"

// Config is the bridge's shape.
type Config struct {
	// Bridge is the bridge's name ("banger0").
	Bridge string
	// Subnet is the guests' network; the bridge takes its first address.
	Subnet netip.Prefix
	// Upstream is where the DNS forwarder asks ("ADDR:PORT"); "" is the
	// first nameserver of /etc/resolv.conf.
	Upstream string
	// Open are networks the host is connected to that guests may reach
	// all the same (guest_lan).
	Open []netip.Prefix
}

// Gateway is the bridge's own address: the guests' route and DNS server.
func (c Config) Gateway() netip.Addr { return c.Subnet.Masked().Addr().Next() }

// Deps are the service's dependencies.
type Deps struct {
	Store  *store.Store
	Log    *slog.Logger
	Config Config
	// Activity adds to a VM's activity record (nil: none is kept).
	Activity Recorder
}

// Recorder adds an event to a VM's activity record; it must not block.
type Recorder func(vm string, ev api.ActivityEvent)

// Service manages host networking.
type Service struct {
	d Deps

	mu sync.Mutex
	// guests are the attached VMs, by name.
	guests map[string]*attached
	// up: the bridge, forwarding and the DNS forwarder are in place.
	up  bool
	dns *forwarder
}

// attached is one running bridge-mode VM.
type attached struct {
	spec  Spec
	lease store.Lease
	tap   string
	// allowed are the addresses an allow list's names resolved to: the
	// guest's set.
	allowed map[netip.Addr]bool
}

// Spec is what a VM asks of the host network.
type Spec struct {
	VM string
	ID string
	// Owner is the uid of the user the VM is of: on the bridge, guests
	// of different owners are kept apart, those of one owner are not.
	Owner  uint32
	Ports  []api.PortForward
	Egress Egress
}

// Link is a VM's place on the bridge, for its VMM and its guest.
type Link struct {
	Tap     string
	MAC     string
	IP      netip.Addr
	Bits    int
	Gateway netip.Addr
}

// GuestParams are the kernel command line words that give the guest its
// address, route and resolver.
func (l Link) GuestParams() []string {
	return []string{
		fmt.Sprintf("%s=%s/%d", guestproto.ParamIP, l.IP, l.Bits),
		guestproto.ParamGateway + "=" + l.Gateway.String(),
		guestproto.ParamDNS + "=" + l.Gateway.String(),
	}
}

// New returns a Service.
func New(d Deps) *Service {
	return &Service{d: d, guests: map[string]*attached{}}
}

// TapName is the tap of the VM with id.
func TapName(id string) string { return TapPrefix + id }

// Attach gives a starting VM its lease (the one it has, or a new one), a
// tap on the bridge and its rules. undo reverses all of it, the lease
// included when it was made now: for a start that fails later on.
func (s *Service) Attach(ctx context.Context, spec Spec) (l Link, undo func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureUp(ctx); err != nil {
		return Link{}, nil, err
	}
	if err := s.portsFree(spec); err != nil {
		return Link{}, nil, err
	}
	a, fresh, err := s.attached(ctx, spec)
	if err != nil {
		return Link{}, nil, err
	}
	// undoLocked runs with s.mu held.
	undoLocked := func() {
		s.detach(context.WithoutCancel(ctx), spec.VM, a.tap)
		if fresh {
			if err := s.d.Store.DeleteLease(context.WithoutCancel(ctx), spec.VM); err != nil {
				s.d.Log.Warn("release a lease", "vm", spec.VM, "err", err)
			}
		}
	}
	defer func() {
		if err != nil {
			undoLocked()
		}
	}()
	if err := makeTap(a.tap, s.d.Config.Bridge); err != nil {
		return Link{}, nil, fmt.Errorf("vm %s: %w", spec.VM, err)
	}
	s.guests[spec.VM] = a
	if err := s.apply(); err != nil {
		return Link{}, nil, fmt.Errorf("vm %s: %w", spec.VM, err)
	}
	s.d.Log.Info("attached vm to the bridge", "vm", spec.VM, "tap", a.tap, "ip", a.lease.IP, "egress", spec.Egress.String())
	return s.link(a), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		undoLocked()
	}, nil
}

func (s *Service) link(a *attached) Link {
	return Link{Tap: a.tap, MAC: a.lease.MAC, IP: a.lease.IP, Bits: s.d.Config.Subnet.Bits(), Gateway: s.d.Config.Gateway()}
}

// portsFree refuses a published port another attached VM holds on an
// address that overlaps.
func (s *Service) portsFree(spec Spec) error {
	for name, g := range s.guests {
		if name == spec.VM {
			continue
		}
		for _, f := range spec.Ports {
			for _, h := range g.spec.Ports {
				if f.HostPort == h.HostPort && f.UDP() == h.UDP() && (f.HostIP == h.HostIP || f.HostIP == "0.0.0.0" || h.HostIP == "0.0.0.0") {
					return fmt.Errorf("port %d is published by vm %s: %w", f.HostPort, name, errdefs.ErrConflict)
				}
			}
		}
	}
	return nil
}

// attached is spec's place on the bridge: its lease (made now when fresh)
// and, for an allow list, the addresses its names resolved to before (a
// VM attached again after a daemon restart).
func (s *Service) attached(ctx context.Context, spec Spec) (a *attached, fresh bool, err error) {
	lease, fresh, err := s.d.Store.Lease(ctx, spec.VM, s.d.Config.Subnet, s.d.Config.Gateway())
	if err != nil {
		return nil, false, err
	}
	a = &attached{spec: spec, lease: lease, tap: TapName(spec.ID), allowed: map[netip.Addr]bool{}}
	if spec.Egress.Mode != EgressAllow {
		return a, fresh, nil
	}
	rs, err := s.d.Store.ResolvedBy(ctx, spec.VM)
	if err != nil {
		return a, fresh, err
	}
	var addrs []netip.Addr
	names := map[netip.Addr]string{}
	for _, r := range rs {
		if ip, err := netip.ParseAddr(r.Addr); err == nil && spec.Egress.Allows(r.Name) {
			addrs = append(addrs, ip)
			names[ip] = r.Name
		}
	}
	// What an older daemon recorded may hold addresses no allow list
	// opens now; and the host's own addresses may have changed.
	open, refused, err := s.publicFilter().split(addrs)
	if err != nil {
		return a, fresh, err
	}
	for ip, why := range refused {
		s.d.Log.Info("a recorded lookup resolved to an address an allow list never opens", "vm", spec.VM, "name", names[ip], "addr", ip, "why", why)
	}
	for _, ip := range open {
		a.allowed[ip] = true
	}
	return a, fresh, nil
}

// publicFilter judges which addresses an allow list's names resolve to
// may open a guest's set.
func (s *Service) publicFilter() publicFilter {
	return publicFilter{subnet: s.d.Config.Subnet.Masked(), open: s.d.Config.Open, own: hostAddrs}
}

// Detach removes a VM's tap and rules; its lease stays. A VM that is not
// attached is no error.
func (s *Service) Detach(ctx context.Context, vm, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detach(ctx, vm, TapName(id))
}

func (s *Service) detach(_ context.Context, vm, tap string) {
	if err := deleteLink(tap); err != nil {
		s.d.Log.Warn("remove a tap", "vm", vm, "tap", tap, "err", err)
	}
	if _, ok := s.guests[vm]; !ok {
		return
	}
	delete(s.guests, vm)
	if err := s.apply(); err != nil {
		s.d.Log.Warn("rewrite banger's nftables tables", "vm", vm, "err", err)
	}
}

// Release removes a VM's tap, rules and lease, and what its lookups
// resolved: the VM is gone.
func (s *Service) Release(ctx context.Context, vm, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detach(ctx, vm, TapName(id))
	return s.d.Store.DeleteLease(ctx, vm)
}

// Resolved returns what a VM's lookups resolved.
func (s *Service) Resolved(ctx context.Context, vm string) ([]api.Resolved, error) {
	return s.d.Store.ResolvedBy(ctx, vm)
}

// Reconcile makes the host match the store after a daemon start: running
// are the bridge-mode VMs whose VMMs still run, known every VM there is.
// Leases of VMs that are gone are released, taps under TapPrefix that no
// running VM owns are removed, and banger's tables are written anew
// (which drops any rule made in them by hand). A running VM whose tap is
// gone cannot get it back without a restart: that is logged.
func (s *Service) Reconcile(ctx context.Context, running []Spec, known []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	leases, err := s.d.Store.Leases(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range leases {
		if !slices.Contains(known, l.VM) {
			s.d.Log.Info("release the lease of a vm that is gone", "vm", l.VM, "ip", l.IP)
			errs = append(errs, s.d.Store.DeleteLease(ctx, l.VM))
		}
	}
	keep := map[string]bool{}
	for _, spec := range running {
		keep[TapName(spec.ID)] = true
	}
	taps, err := ourTaps()
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range taps {
		if !keep[t] {
			s.d.Log.Info("remove a tap no vm owns", "tap", t)
			errs = append(errs, deleteLink(t))
		}
	}
	if len(running) == 0 && !s.up {
		// Nothing runs in bridge mode: only what banger left is undone.
		if tablesExist() {
			c, err := newConn()
			if err == nil {
				dropTables(c)
				err = c.Flush()
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if err := s.ensureUp(ctx); err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, spec := range running {
		a, _, err := s.attached(ctx, spec)
		if a == nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, err)
		if !linkExists(a.tap) {
			s.d.Log.Warn("a running vm lost its tap: restart it to reconnect it", "vm", spec.VM, "tap", a.tap)
		} else if br, err := netlink.LinkByName(s.d.Config.Bridge); err == nil {
			// On the bridge again, should it have been made anew.
			errs = append(errs, plugTap(a.tap, br))
		}
		s.guests[spec.VM] = a
	}
	errs = append(errs, s.apply())
	return errors.Join(errs...)
}

// allow adds addresses to a guest's set, at once in the kernel.
func (s *Service) allow(vm string, addrs []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.guests[vm]
	if !ok {
		return nil
	}
	return openSet(TableName, g.spec, g.allowed, addrs)
}

// guestAt returns the attached guest with address ip.
func (s *Service) guestAt(ip netip.Addr) (Spec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.guests {
		if g.lease.IP == ip {
			return g.spec, true
		}
	}
	return Spec{}, false
}

// Close stops the DNS forwarder. The bridge, taps and tables stay: the
// VMs outlive the daemon.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dns != nil {
		s.dns.close()
		s.dns = nil
	}
}
