package vm

import (
	"context"
	"fmt"

	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/vm/vmnet"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Egress is what a VM's lookups resolved, and its policy.
func (s *Service) Egress(ctx context.Context, name string) (api.Egress, error) {
	v, err := s.get(ctx, name)
	if err != nil {
		return api.Egress{}, err
	}
	if v.Network == api.NetNone {
		return api.Egress{}, fmt.Errorf("vm %s is in none mode: it reaches nothing, and looks nothing up: %w", name, errdefs.ErrInvalid)
	}
	rs, err := s.net().Resolved(ctx, name)
	if err != nil {
		return api.Egress{}, err
	}
	pol := v.Egress
	if pol == "" {
		pol = hostnet.EgressOpen
	}
	return api.Egress{VM: name, Policy: pol, Resolved: rs}, nil
}

// net is what the VM's network modes can use, as the deps have it now.
func (s *Service) net() *vmnet.Networks {
	return &vmnet.Networks{Net: s.d.Net, NetWhy: s.d.NetWhy, Guard: s.d.Guard, GuardWhy: s.d.GuardWhy, Driver: s.d.Driver, DefaultMode: s.d.Defaults.Network}
}

// exists says whether the caller may name VM name (not found if not).
func (s *Service) exists(ctx context.Context, name string) error {
	_, err := s.get(ctx, name)
	return err
}
