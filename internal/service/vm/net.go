package vm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// checkNetwork resolves a create request's network mode and egress
// policy: the mode defaults to the config's; a policy other than open
// needs bridge mode, where the host enforces it; from=VM becomes the
// allow list of the names VM's lookups resolved.
func (s *Service) checkNetwork(ctx context.Context, req api.VMCreateRequest, ports []api.PortForward) (mode, egress string, err error) {
	mode = req.Network
	if mode == "" && req.Snapshot != "" {
		// A fork wakes with its snapshot's network.
		mode = api.NetUser
	}
	if mode == "" {
		mode = s.d.Defaults.Network
	}
	if mode == "" {
		mode = api.NetUser
	}
	switch mode {
	case api.NetUser, api.NetNone:
	case api.NetBridge:
		if s.d.Net == nil {
			return "", "", fmt.Errorf("--net bridge: %s: %w", s.d.NetWhy, errdefs.ErrUnavailable)
		}
	default:
		return "", "", fmt.Errorf("--net %q: want user, bridge or none: %w", mode, errdefs.ErrInvalid)
	}
	if mode == api.NetNone && len(ports) > 0 {
		return "", "", fmt.Errorf("--net none publishes no ports: drop -p, or use --net user: %w", errdefs.ErrInvalid)
	}
	if req.Snapshot != "" && mode == api.NetBridge {
		return "", "", fmt.Errorf("a fork resumes with its snapshot's user-mode network: bridge mode is not for forks yet: %w", errdefs.ErrInvalid)
	}
	pol := req.Egress
	if from, ok := strings.CutPrefix(pol, "from="); ok {
		if pol, err = s.learned(ctx, from); err != nil {
			return "", "", err
		}
	}
	e, err := hostnet.ParseEgress(pol)
	if err != nil {
		return "", "", err
	}
	if e.Mode != hostnet.EgressOpen {
		switch {
		case mode == api.NetNone:
			return "", "", fmt.Errorf("--net none reaches nothing: --egress %s has nothing to hold: %w", req.Egress, errdefs.ErrInvalid)
		case mode == api.NetUser && s.d.Guard == nil:
			return "", "", fmt.Errorf("--egress %s under the user-mode network needs the guard, which is off here (%s): use --net bridge, or turn guard_host on: %w", req.Egress, s.d.GuardWhy, errdefs.ErrUnavailable)
		case mode == api.NetUser && req.Snapshot != "":
			// A fork's processes run from its first instruction, before
			// the daemon learns its VMM's uid and can hold it.
			return "", "", fmt.Errorf("a fork resumes with open egress: --egress is not for forks yet: %w", errdefs.ErrInvalid)
		}
	}
	if mode == api.NetNone || mode == api.NetUser && e.Mode == hostnet.EgressOpen {
		return mode, "", nil
	}
	return mode, e.String(), nil
}

// learned is the allow list of what vm's lookups resolved to an address.
func (s *Service) learned(ctx context.Context, vm string) (string, error) {
	if err := names.Validate("vm", vm); err != nil {
		return "", err
	}
	if _, err := s.get(ctx, vm); err != nil {
		return "", fmt.Errorf("--egress from=%s: %w", vm, err)
	}
	rs, err := s.resolved(ctx, vm)
	if err != nil {
		return "", fmt.Errorf("--egress from=%s: %w", vm, err)
	}
	var hosts []string
	for _, r := range rs {
		if r.Addr != "" && !slices.Contains(hosts, r.Name) {
			hosts = append(hosts, r.Name)
		}
	}
	if len(hosts) == 0 {
		return "", fmt.Errorf("--egress from=%s: vm %s has resolved no name yet (run it with --egress learn, use what it needs, then see `banger vm egress %s`): %w", vm, vm, vm, errdefs.ErrInvalid)
	}
	return "allow=" + strings.Join(hosts, ","), nil
}

// netSpec is what a bridge-mode VM asks of the host network.
func (s *Service) netSpec(v store.VM) (hostnet.Spec, error) {
	e, err := hostnet.ParseEgress(v.Egress)
	if err != nil {
		return hostnet.Spec{}, fmt.Errorf("vm %s: %w", v.Name, err)
	}
	return hostnet.Spec{VM: v.Name, ID: v.ID, Owner: v.Owner, Ports: v.Ports, Egress: e}, nil
}

// network connects a starting VM: its user-mode forwards (SSH first), or
// its tap on the bridge (then undo reverses that when the start fails),
// and the kernel command line words that configure the guest's side.
func (s *Service) network(ctx context.Context, v *store.VM, p operation.Progress) (n vmm.Network, params []string, undo func(), err error) {
	undo = func() {}
	ssh := vmm.Forward{HostPort: v.SSHPort, GuestPort: 22}
	switch v.Network {
	case api.NetBridge:
		if s.d.Net == nil {
			return n, nil, undo, fmt.Errorf("vm %s is in bridge mode: %s: %w", v.Name, s.d.NetWhy, errdefs.ErrUnavailable)
		}
		spec, err := s.netSpec(*v)
		if err != nil {
			return n, nil, undo, err
		}
		began := time.Now()
		l, u, err := s.d.Net.Attach(ctx, spec)
		if err != nil {
			return n, nil, undo, err
		}
		p.Stage("network", "vm %s is on the bridge at %s (tap %s; tap, lease and rules took %s)", v.Name, l.IP, l.Tap, time.Since(began).Round(time.Microsecond))
		n, v.IP = vmm.Network{Tap: l.Tap, MAC: l.MAC}, l.IP.String()
		return n, l.GuestParams(), u, nil
	case api.NetNone:
		n = vmm.Network{Isolated: true, Forwards: []vmm.Forward{ssh}}
	default:
		n.Forwards = []vmm.Forward{ssh}
		for _, f := range v.Ports {
			n.Forwards = append(n.Forwards, vmm.Forward{HostIP: f.HostIP, HostPort: f.HostPort, GuestPort: f.GuestPort, UDP: f.UDP()})
		}
	}
	return n, s.d.Driver.NetParams(n), undo, nil
}

// networkLine says, for progress, what a VM's network is.
func (s *Service) networkLine(v store.VM) string {
	switch v.Network {
	case api.NetBridge:
		return fmt.Sprintf("bridge (%s, egress %s)", v.IP, v.Egress)
	case api.NetNone:
		return "none: the guest reaches nothing"
	}
	if v.Egress != "" {
		return s.d.Driver.Network() + ", egress " + v.Egress
	}
	return s.d.Driver.Network()
}

// detach takes a stopped VM off the bridge (its lease stays), or off
// its user-mode policy's rules.
func (s *Service) detach(ctx context.Context, v store.VM) {
	if v.Network == api.NetBridge && s.d.Net != nil {
		s.d.Net.Detach(ctx, v.Name, v.ID)
	}
	if v.Network == api.NetUser && s.d.Guard != nil {
		s.d.Guard.DetachUser(v.Name)
	}
}

// police holds a started user-mode VM whose VMM runs as pid to its
// egress policy; other VMs need nothing. It runs before the daemon says
// the VM is ready, when no program of a user's has run in the guest (a
// boot runs only the agent; a template was saved before anyone used it;
// forks under a policy are refused).
func (s *Service) police(ctx context.Context, v store.VM, pid int) error {
	if v.Network != api.NetUser || v.Egress == "" || v.Egress == hostnet.EgressOpen {
		return nil
	}
	e, err := hostnet.ParseEgress(v.Egress)
	if err != nil || e.Mode == hostnet.EgressOpen {
		return err
	}
	if s.d.Guard == nil {
		return fmt.Errorf("vm %s: --egress %s: %s: %w", v.Name, v.Egress, s.d.GuardWhy, errdefs.ErrUnavailable)
	}
	uid, err := vmmUID(pid)
	if err != nil || uid == 0 {
		return fmt.Errorf("vm %s: the uid its VMM runs as (%d, %v): a policy holds a VMM of its own uid only: %w", v.Name, uid, err, errdefs.ErrUnavailable)
	}
	return s.d.Guard.AttachUser(ctx, hostnet.Spec{VM: v.Name, ID: v.ID, Egress: e}, uint32(uid))
}

// vmmUID is the uid a VMM runs as (a seam: a test's VMMs run as its own).
var vmmUID = vmm.UID

// resolved is what a VM's lookups resolved, wherever its network
// recorded them.
func (s *Service) resolved(ctx context.Context, vm string) ([]api.Resolved, error) {
	switch {
	case s.d.Net != nil:
		return s.d.Net.Resolved(ctx, vm)
	case s.d.Guard != nil:
		return s.d.Guard.Resolved(ctx, vm)
	}
	return nil, fmt.Errorf("%s: %w", s.d.NetWhy, errdefs.ErrUnavailable)
}

// Egress is what a VM's lookups resolved, and its policy.
func (s *Service) Egress(ctx context.Context, name string) (api.Egress, error) {
	v, err := s.get(ctx, name)
	if err != nil {
		return api.Egress{}, err
	}
	if v.Network == api.NetNone {
		return api.Egress{}, fmt.Errorf("vm %s is in none mode: it reaches nothing, and looks nothing up: %w", name, errdefs.ErrInvalid)
	}
	rs, err := s.resolved(ctx, name)
	if err != nil {
		return api.Egress{}, err
	}
	pol := v.Egress
	if pol == "" {
		pol = hostnet.EgressOpen
	}
	return api.Egress{VM: name, Policy: pol, Resolved: rs}, nil
}
