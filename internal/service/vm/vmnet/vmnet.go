// Package vmnet connects VMs to their network: user-mode forwards, or a
// tap on banger's bridge, and the egress policy the host holds each one
// to (in bridge mode by the host network service, in user mode by the
// guard, through the VMM's own uid).
package vmnet

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

// Guard holds user-mode VMs to their egress policies (see hostnet.Guard).
type Guard interface {
	// AttachUser holds a started VM, whose VMM runs as uid, to spec's
	// policy; DetachUser undoes it when the VM stops.
	AttachUser(ctx context.Context, spec hostnet.Spec, uid uint32) error
	DetachUser(vm string)
	Resolved(ctx context.Context, vm string) ([]api.Resolved, error)
	// Forget drops a removed VM's recorded lookups.
	Forget(ctx context.Context, vm string) error
}

// HostNet is what VMs need of the host network service, for bridge mode.
type HostNet interface {
	// Attach gives a starting VM its lease, tap and rules; undo reverses
	// all of it (the lease too when it was made then).
	Attach(ctx context.Context, spec hostnet.Spec) (l hostnet.Link, undo func(), err error)
	// Detach removes a stopped VM's tap and rules; Release its lease too.
	Detach(ctx context.Context, vm, id string)
	Release(ctx context.Context, vm, id string) error
	// Reconcile makes the host match the running VMs at daemon start.
	Reconcile(ctx context.Context, running []hostnet.Spec, known []string) error
	Resolved(ctx context.Context, vm string) ([]api.Resolved, error)
}

// Networks is what VMs' network modes can use on this host.
type Networks struct {
	// Net is the host network service; nil where bridge mode cannot run
	// (NetWhy says why).
	Net    HostNet
	NetWhy string
	// Guard holds user-mode VMs to egress policies; nil where it is off
	// (GuardWhy says why).
	Guard       Guard
	GuardWhy    string
	Driver      vmm.Driver
	DefaultMode string // the config's default_network
}

// Check resolves a create request's network mode and egress
// policy: the mode defaults to the config's; a policy other than open
// needs bridge mode, where the host enforces it; from=VM becomes the
// allow list of the names VM's lookups resolved.
func (n *Networks) Check(ctx context.Context, req api.VMCreateRequest, ports []api.PortForward, exists func(ctx context.Context, vm string) error) (mode, egress string, err error) {
	mode = req.Network
	if mode == "" && req.Snapshot != "" {
		// A fork wakes with its snapshot's network.
		mode = api.NetUser
	}
	if mode == "" {
		mode = n.DefaultMode
	}
	if mode == "" {
		mode = api.NetUser
	}
	switch mode {
	case api.NetUser, api.NetNone:
	case api.NetBridge:
		if n.Net == nil {
			return "", "", fmt.Errorf("--net bridge: %s: %w", n.NetWhy, errdefs.ErrUnavailable)
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
		if pol, err = n.learned(ctx, from, exists); err != nil {
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
		case mode == api.NetUser && n.Guard == nil:
			return "", "", fmt.Errorf("--egress %s under the user-mode network needs the guard, which is off here (%s): use --net bridge, or turn guard_host on: %w", req.Egress, n.GuardWhy, errdefs.ErrUnavailable)
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
func (n *Networks) learned(ctx context.Context, vm string, exists func(ctx context.Context, vm string) error) (string, error) {
	if err := names.Validate("vm", vm); err != nil {
		return "", err
	}
	if err := exists(ctx, vm); err != nil {
		return "", fmt.Errorf("--egress from=%s: %w", vm, err)
	}
	rs, err := n.Resolved(ctx, vm)
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

// Spec is what a bridge-mode VM asks of the host network.
func Spec(v store.VM) (hostnet.Spec, error) {
	e, err := hostnet.ParseEgress(v.Egress)
	if err != nil {
		return hostnet.Spec{}, fmt.Errorf("vm %s: %w", v.Name, err)
	}
	return hostnet.Spec{VM: v.Name, ID: v.ID, Owner: v.Owner, Ports: v.Ports, Egress: e}, nil
}

// Connect connects a starting VM: its user-mode forwards (SSH first), or
// its tap on the bridge (then undo reverses that when the start fails),
// and the kernel command line words that configure the guest's side.
func (n *Networks) Connect(ctx context.Context, v *store.VM, p operation.Progress) (net vmm.Network, params []string, undo func(), err error) {
	undo = func() {}
	ssh := vmm.Forward{HostPort: v.SSHPort, GuestPort: 22}
	switch v.Network {
	case api.NetBridge:
		if n.Net == nil {
			return net, nil, undo, fmt.Errorf("vm %s is in bridge mode: %s: %w", v.Name, n.NetWhy, errdefs.ErrUnavailable)
		}
		spec, err := Spec(*v)
		if err != nil {
			return net, nil, undo, err
		}
		began := time.Now()
		l, u, err := n.Net.Attach(ctx, spec)
		if err != nil {
			return net, nil, undo, err
		}
		p.Stage("network", "vm %s is on the bridge at %s (tap %s; tap, lease and rules took %s)", v.Name, l.IP, l.Tap, time.Since(began).Round(time.Microsecond))
		net, v.IP = vmm.Network{Tap: l.Tap, MAC: l.MAC}, l.IP.String()
		return net, l.GuestParams(), u, nil
	case api.NetNone:
		net = vmm.Network{Isolated: true, Forwards: []vmm.Forward{ssh}}
	default:
		net.Forwards = []vmm.Forward{ssh}
		for _, f := range v.Ports {
			net.Forwards = append(net.Forwards, vmm.Forward{HostIP: f.HostIP, HostPort: f.HostPort, GuestPort: f.GuestPort, UDP: f.UDP()})
		}
	}
	return net, n.Driver.NetParams(net), undo, nil
}

// Line says, for progress, what a VM's network is.
func (n *Networks) Line(v store.VM) string {
	switch v.Network {
	case api.NetBridge:
		return fmt.Sprintf("bridge (%s, egress %s)", v.IP, v.Egress)
	case api.NetNone:
		return "none: the guest reaches nothing"
	}
	if v.Egress != "" {
		return n.Driver.Network() + ", egress " + v.Egress
	}
	return n.Driver.Network()
}

// Detach takes a stopped VM off the bridge (its lease stays), or off
// its user-mode policy's rules.
func (n *Networks) Detach(ctx context.Context, v store.VM) {
	if v.Network == api.NetBridge && n.Net != nil {
		n.Net.Detach(ctx, v.Name, v.ID)
	}
	if v.Network == api.NetUser && n.Guard != nil {
		n.Guard.DetachUser(v.Name)
	}
}

// Police holds a started user-mode VM whose VMM runs as pid to its
// egress policy; other VMs need nothing. It runs before the daemon says
// the VM is ready, when no program of a user's has run in the guest (a
// boot runs only the agent; a template was saved before anyone used it;
// forks under a policy are refused).
func (n *Networks) Police(ctx context.Context, v store.VM, pid int) error {
	if v.Network != api.NetUser || v.Egress == "" || v.Egress == hostnet.EgressOpen {
		return nil
	}
	e, err := hostnet.ParseEgress(v.Egress)
	if err != nil || e.Mode == hostnet.EgressOpen {
		return err
	}
	if n.Guard == nil {
		return fmt.Errorf("vm %s: --egress %s: %s: %w", v.Name, v.Egress, n.GuardWhy, errdefs.ErrUnavailable)
	}
	uid, err := VMMUID(pid)
	if err != nil || uid == 0 {
		return fmt.Errorf("vm %s: the uid its VMM runs as (%d, %v): a policy holds a VMM of its own uid only: %w", v.Name, uid, err, errdefs.ErrUnavailable)
	}
	return n.Guard.AttachUser(ctx, hostnet.Spec{VM: v.Name, ID: v.ID, Egress: e}, uint32(uid))
}

// VMMUID is the uid a VMM runs as (a seam: a test's VMMs run as its own).
var VMMUID = vmm.UID

// Resolved is what a VM's lookups resolved, wherever its network
// recorded them.
func (n *Networks) Resolved(ctx context.Context, vm string) ([]api.Resolved, error) {
	switch {
	case n.Net != nil:
		return n.Net.Resolved(ctx, vm)
	case n.Guard != nil:
		return n.Guard.Resolved(ctx, vm)
	}
	return nil, fmt.Errorf("%s: %w", n.NetWhy, errdefs.ErrUnavailable)
}
