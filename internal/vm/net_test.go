package vm

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/errdefs"
	"github.com/banger-dev/banger/internal/hostnet"
	"github.com/banger-dev/banger/internal/operation"
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
	n := &fakeNet{resolved: map[string][]api.Resolved{"learner": {{Name: "a.test", Addr: "203.0.113.10"}, {Name: "gone.test"}, {Name: "b.test", Addr: "203.0.113.20"}}}}
	s.d.Net = n
	for _, tt := range []struct {
		req  api.VMCreateRequest
		want string
	}{
		{api.VMCreateRequest{Name: "x", Network: "wifi"}, "want user, bridge or none"},
		{api.VMCreateRequest{Name: "x", Egress: "deny"}, "bridge mode only"},
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
