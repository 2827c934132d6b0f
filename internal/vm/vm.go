// Package vm is the VMService: VM lifecycle through a VMM driver. VMs are
// not implemented yet; the service exists so that the other services can
// already ask it what they need (which VMs use a kernel or an image) and
// the daemon's wiring does not change when they arrive.
package vm

import (
	"context"

	"github.com/banger-dev/banger/internal/runner"
)

// Deps are the service's dependencies.
type Deps struct {
	Runner runner.Runner
}

// Service manages VMs.
type Service struct {
	d Deps
}

// New returns a Service.
func New(d Deps) *Service { return &Service{d: d} }

// Count returns how many VMs exist. There are none until VMs are built.
func (s *Service) Count(ctx context.Context) (int, error) { return 0, nil }

// VMsUsingKernel names the VMs booting the given kernel, so that kernel rm
// can refuse while any does.
func (s *Service) VMsUsingKernel(ctx context.Context, kernel string) ([]string, error) {
	return nil, nil
}

// VMsUsingImage names the VMs whose disks come from the given image, so
// that image rm can refuse while any does.
func (s *Service) VMsUsingImage(ctx context.Context, image string) ([]string, error) {
	return nil, nil
}
