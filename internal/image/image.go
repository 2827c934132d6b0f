// Package image is the ImageService: pulling OCI images and bundles into
// bootable disks. It is an empty shell until images are built; the daemon
// already wires it with the dependencies it will use.
package image

import (
	"context"

	"github.com/banger-dev/banger/internal/runner"
)

// Deps are the service's dependencies.
type Deps struct {
	Runner runner.Runner
}

// Service manages images.
type Service struct {
	d Deps
}

// New returns a Service.
func New(d Deps) *Service { return &Service{d: d} }

// Count returns how many images are published. There are none until
// images are built.
func (s *Service) Count(ctx context.Context) (int, error) { return 0, nil }
