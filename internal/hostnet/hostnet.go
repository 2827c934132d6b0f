// Package hostnet is the HostNetwork service: bridges, taps, addresses and
// banger's own nftables table for bridge-mode VMs. It is an empty shell
// until VM networking is built; every host change it will make goes
// through its runner.
package hostnet

import "github.com/banger-dev/banger/internal/runner"

// Deps are the service's dependencies.
type Deps struct {
	Runner runner.Runner
}

// Service manages host networking.
type Service struct {
	d Deps
}

// New returns a Service.
func New(d Deps) *Service { return &Service{d: d} }
