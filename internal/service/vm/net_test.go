package vm

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/vm/vmnet"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// fakeNet stands in for the host network service: it records what the VM
// service asks of it.
type fakeNet struct {
	attached map[string]hostnet.Spec
	undone   []string
	released []string
	detached []string
	resolved map[string][]api.Resolved
}

func (n *fakeNet) Attach(_ context.Context, spec hostnet.Spec) (hostnet.Link, func(), error) {
	if n.attached == nil {
		n.attached = map[string]hostnet.Spec{}
	}
	n.attached[spec.VM] = spec
	l := hostnet.Link{Tap: hostnet.TapName(spec.ID), MAC: "02:b4:0a:d5:00:02", IP: netip.MustParseAddr("10.213.0.2"), Bits: 24, Gateway: netip.MustParseAddr("10.213.0.1")}
	return l, func() { n.undone = append(n.undone, spec.VM); delete(n.attached, spec.VM) }, nil
}
func (n *fakeNet) Detach(_ context.Context, vm, _ string) { n.detached = append(n.detached, vm) }
func (n *fakeNet) Release(_ context.Context, vm, _ string) error {
	n.released = append(n.released, vm)
	return nil
}
func (n *fakeNet) Reconcile(context.Context, []hostnet.Spec, []string) error { return nil }
func (n *fakeNet) Resolved(_ context.Context, vm string) ([]api.Resolved, error) {
	return n.resolved[vm], nil
}

func TestBridgeMode(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	ctx := context.Background()

	// Without the host network service, bridge mode says why not.
	s.d.NetWhy = "bridge mode needs the daemon to run as root"
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "b", Network: "bridge"}, operation.Discard); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "root") {
		t.Fatalf("bridge without the service: %v", err)
	}
	s.d.GuardWhy = "guard_host = false"
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "x", Egress: "deny"}, operation.Discard); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "guard_host = false") {
		t.Errorf("--egress deny under user mode without the guard: %v", err)
	}
	n := &fakeNet{resolved: map[string][]api.Resolved{"learner": {{Name: "a.test", Addr: "203.0.113.10"}, {Name: "gone.test"}, {Name: "b.test", Addr: "203.0.113.20"}}}}
	s.d.Net = n
	for _, tt := range []struct {
		req  api.VMCreateRequest
		want string
	}{
		{api.VMCreateRequest{Name: "x", Network: "wifi"}, "want user, bridge or none"},
		{api.VMCreateRequest{Name: "x", Network: "none", Egress: "deny"}, "reaches nothing"},
		{api.VMCreateRequest{Name: "x", Network: "none", Ports: []string{"8080:80"}}, "publishes no ports"},
		{api.VMCreateRequest{Name: "x", Network: "bridge", Egress: "allow="}, "names no host"},
		{api.VMCreateRequest{Name: "x", Network: "bridge", Egress: "from=nobody"}, "does not exist"},
	} {
		if _, err := s.Create(ctx, tt.req, operation.Discard); !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrNotFound) || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.req, err, tt.want)
		}
	}

	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "learner", Network: "bridge", Egress: "learn"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	v, err := s.Create(ctx, api.VMCreateRequest{Name: "b", Network: "bridge", Egress: "from=learner", Ports: []string{"8080:80/udp"}, Start: true}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The learned names that resolved, as an allow list.
	if v.Network != api.NetBridge || v.Egress != "allow=a.test,b.test" || v.SSHPort != 0 || v.IP != "10.213.0.2" || v.SSHAddr() != "10.213.0.2:22" {
		t.Fatalf("created %+v", v)
	}
	cfg := d.started[len(d.started)-1]
	if cfg.Network.Tap != hostnet.TapName(n.attached["b"].ID) || cfg.Network.MAC == "" || len(cfg.Network.Forwards) != 0 {
		t.Errorf("the driver got network %+v", cfg.Network)
	}
	for _, w := range []string{"banger.ip=10.213.0.2/24", "banger.gw=10.213.0.1", "banger.dns=10.213.0.1"} {
		if !strings.Contains(cfg.Cmdline, w) {
			t.Errorf("cmdline %q lacks %s", cfg.Cmdline, w)
		}
	}
	if strings.Contains(cfg.Cmdline, "fakenet") {
		t.Errorf("a bridge-mode guest got the user-mode network's words: %s", cfg.Cmdline)
	}
	if sp := n.attached["b"]; len(sp.Ports) != 1 || !sp.Ports[0].UDP() || sp.Egress.String() != "allow=a.test,b.test" {
		t.Errorf("attached with %+v", sp)
	}
	// Not templated, not snapshot: the address is the guest's own.
	if err := s.CheckSnapshot(ctx, "b", api.SnapshotRequest{}); err == nil || !strings.Contains(err.Error(), "bridge mode") {
		t.Errorf("snapshot of a bridge-mode VM: %v", err)
	}
	if _, err := s.Stop(ctx, "b", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if len(n.detached) == 0 || n.detached[len(n.detached)-1] != "b" {
		t.Errorf("a stopped VM stayed attached: %v", n.detached)
	}
	if err := s.Remove(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	if len(n.released) != 1 || n.released[0] != "b" {
		t.Errorf("released %v", n.released)
	}

	// A start that fails after the VM was attached undoes the attach.
	d.console = "no ready line\n"
	d.exit = true
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "bad", Network: "bridge", Start: true}, operation.Discard); err == nil {
		t.Fatal("a VM that never got ready started")
	}
	if len(n.undone) != 1 || n.undone[0] != "bad" || n.attached["bad"].VM != "" {
		t.Errorf("undone %v, attached %v", n.undone, n.attached)
	}
}

// fakeGuard records what the VM service asks of the guard.
type fakeGuard struct {
	attached map[string]uint32
	specs    map[string]hostnet.Spec
	detached []string
	forgot   []string
}

func (g *fakeGuard) AttachUser(_ context.Context, spec hostnet.Spec, uid uint32) error {
	g.attached[spec.VM], g.specs[spec.VM] = uid, spec
	return nil
}
func (g *fakeGuard) DetachUser(vm string) { g.detached = append(g.detached, vm) }
func (g *fakeGuard) Resolved(context.Context, string) ([]api.Resolved, error) {
	return []api.Resolved{{Name: "a.test", Addr: "203.0.113.10"}}, nil
}
func (g *fakeGuard) Forget(_ context.Context, vm string) error {
	g.forgot = append(g.forgot, vm)
	return nil
}

// Under the user-mode network a policy is held by the guard: the started
// VMM's uid and the policy go to it before the VM is ready, a stop takes
// the VM off it, rm forgets its lookups; forks and --net none refuse one.
func TestUserModeEgress(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	ctx := context.Background()
	g := &fakeGuard{attached: map[string]uint32{}, specs: map[string]hostnet.Spec{}}
	s.d.Guard = g
	old := vmnet.VMMUID
	vmnet.VMMUID = func(int) (int, error) { return 1900000007, nil }
	defer func() { vmnet.VMMUID = old }()

	v, err := s.Create(ctx, api.VMCreateRequest{Name: "u", Egress: "allow=a.test", Start: true}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v.Network != api.NetUser || v.Egress != "allow=a.test" || g.attached["u"] != 1900000007 || g.specs["u"].Egress.String() != "allow=a.test" {
		t.Fatalf("vm %+v; guard got %v %+v", v, g.attached, g.specs["u"])
	}
	if e, err := s.Egress(ctx, "u"); err != nil || e.Policy != "allow=a.test" || len(e.Resolved) != 1 {
		t.Errorf("vm egress u: %+v, %v", e, err)
	}
	open, err := s.Create(ctx, api.VMCreateRequest{Name: "o", Start: true}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g.attached["o"]; ok || open.Egress != "" {
		t.Errorf("an open VM went to the guard: %v, egress %q", g.attached, open.Egress)
	}
	if _, err := s.Stop(ctx, "u", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(g.detached, "u") {
		t.Errorf("a stopped VM stayed under the guard: %v", g.detached)
	}
	if err := s.Remove(ctx, "u", true); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(g.forgot, "u") {
		t.Errorf("rm did not forget u's lookups: %v", g.forgot)
	}
	if _, _, err := s.net().Check(ctx, api.VMCreateRequest{Name: "f", Egress: "deny", Snapshot: "snap"}, nil, s.exists); err == nil || !strings.Contains(err.Error(), "not for forks") {
		t.Errorf("a fork under a policy: %v", err)
	}
	// A VMM still running as root cannot be told apart from the daemon:
	// the start fails rather than run unheld.
	vmnet.VMMUID = func(int) (int, error) { return 0, nil }
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "r", Egress: "deny", Start: true}, operation.Discard); err == nil || !strings.Contains(err.Error(), "uid") {
		t.Errorf("a policy over a root VMM: %v", err)
	}
}
