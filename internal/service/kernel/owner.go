package kernel

import (
	"context"
	"errors"
	"fmt"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/service/kernel/kernelcat"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Kernels have owners: the uid of the caller that pulled or imported one.
// Pulled kernels (the catalog's) are a cache every caller shares; a
// kernel a user imported from its own files is its own until shared. A
// kernel a caller may not see is, to it, one that does not exist, in
// every answer and every error.

// sourceImport is the source kind of an imported kernel.
const sourceImport = "import"

// visible says whether ctx's caller may see k.
func visible(ctx context.Context, k api.Kernel) bool {
	return k.Shared || peer.Owns(ctx, k.Owner)
}

// lookup returns the named kernel as ctx's caller knows it: one it may
// not see is ErrNotFound, like one that does not exist, and hidden then
// says that it does exist, so that the name is not pulled over it.
func (s *Service) lookup(ctx context.Context, name string) (k api.Kernel, hidden bool, err error) {
	k, err = s.d.Store.GetKernel(ctx, name)
	if err != nil {
		return api.Kernel{}, false, err
	}
	if !visible(ctx, k) {
		return api.Kernel{}, true, fmt.Errorf("kernel %q: %w", name, errdefs.ErrNotFound)
	}
	k.Dir = s.d.Layout.Kernel(name)
	return k, false, nil
}

// visibleKernels returns the kernels ctx's caller may see.
func (s *Service) visibleKernels(ctx context.Context) ([]api.Kernel, error) {
	ks, err := s.d.Store.ListKernels(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Kernel{}
	for _, k := range ks {
		if visible(ctx, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// unavailable is the refusal of a name another user's kernel holds: it
// says no more than that the name is taken.
func unavailable(name string) error {
	return fmt.Errorf("kernel name %q is not available: pick another name: %w", name, errdefs.ErrConflict)
}

// claimable checks that an imported kernel may take name. Catalog names
// are the catalog's, so that no private kernel ever stands in the way of
// another user's pull of a catalog kernel.
func (s *Service) claimable(ctx context.Context, name string) error {
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("check kernel name %s against the catalog: %w", name, err)
	}
	if _, ok := kernelcat.Find(es, name); ok {
		return fmt.Errorf("kernel name %q belongs to the kernel catalog (`banger kernel pull %s` fetches it): pick another name: %w", name, name, errdefs.ErrConflict)
	}
	_, hidden, err := s.lookup(ctx, name)
	switch {
	case err == nil:
		return fmt.Errorf("kernel %q already exists: remove it first with `banger kernel rm %s`, or pick another name: %w", name, name, errdefs.ErrConflict)
	case hidden:
		return unavailable(name)
	case errors.Is(err, errdefs.ErrNotFound):
		return nil
	}
	return err
}

// mayRemove says whether ctx's caller may remove k, which it sees:
// anyone a pulled one (a cache), only the owner or root an imported one.
func mayRemove(ctx context.Context, k api.Kernel) error {
	if k.SourceKind == sourceImport && !peer.Owns(ctx, k.Owner) {
		return fmt.Errorf("kernel %q was imported by another user: only they or root may remove it: %w", k.Name, errdefs.ErrPermission)
	}
	return nil
}

// inUse is rm's refusal while VMs or snapshots use a kernel: it names
// the caller's own and only counts other users'.
func inUse(ctx context.Context, name string, ds []api.Dependent) error {
	mine := func(owner uint32) bool { return peer.Owns(ctx, owner) }
	return fmt.Errorf("kernel %q is in use by %s: it can be removed once none uses it: %w", name, names.InUse(ds, mine), errdefs.ErrConflict)
}

// Share makes a kernel every caller sees: its owner or root may. A
// kernel already shared is returned as is.
func (s *Service) Share(ctx context.Context, name string) (api.Kernel, error) {
	if err := names.Validate("kernel", name); err != nil {
		return api.Kernel{}, err
	}
	unlock, err := s.names.Lock(ctx, name, nil)
	if err != nil {
		return api.Kernel{}, err
	}
	defer unlock()
	k, _, err := s.lookup(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return api.Kernel{}, s.notFound(ctx, name, false)
	} else if err != nil {
		return api.Kernel{}, err
	}
	// A private kernel the caller sees is its own (or the caller is root).
	if k.Shared {
		return k, nil
	}
	if err := s.d.Store.ShareKernel(ctx, name); err != nil {
		return api.Kernel{}, fmt.Errorf("share kernel %s: %w", name, err)
	}
	k.Shared = true
	return k, nil
}
