// Package workspace is the WorkspaceService: seeding a directory into a VM
// as its work disk, bringing changes back, and syncing allowed credentials.
// It is an empty shell until VMs are built.
package workspace

import "github.com/banger-dev/banger/internal/runner"

// Deps are the service's dependencies.
type Deps struct {
	Runner runner.Runner
}

// Service manages work disks and auth sync.
type Service struct {
	d Deps
}

// New returns a Service.
func New(d Deps) *Service { return &Service{d: d} }
