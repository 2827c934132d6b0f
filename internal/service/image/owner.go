package image

import (
	"context"
	"errors"
	"fmt"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/service/image/imagecat"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Images have owners: the uid of the caller that pulled or made one.
// Pulled images (catalog, OCI registry) are a cache every caller shares;
// an image a user made of its own data (register, promote) is its own
// until shared. An image a caller may not see is, to it, one that does
// not exist, in every answer and every error.

// visible says whether ctx's caller may see im.
func visible(ctx context.Context, im api.Image) bool {
	return im.Shared || peer.Owns(ctx, im.Owner)
}

// userMade says whether im was made from a user's own data rather than
// pulled: only its owner (or root) may remove it, shared or not.
func userMade(im api.Image) bool {
	return im.SourceKind == api.SourceRegister || im.SourceKind == api.SourcePromote
}

// lookup returns the named image as ctx's caller knows it: one it may
// not see is ErrNotFound, like one that does not exist, and hidden then
// says that it does exist, so that the name is not pulled over it.
func (s *Service) lookup(ctx context.Context, name string) (im api.Image, hidden bool, err error) {
	im, err = s.d.Store.GetImage(ctx, name)
	if err != nil {
		return api.Image{}, false, err
	}
	if !visible(ctx, im) {
		return api.Image{}, true, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return im, false, nil
}

// visibleImages returns the images ctx's caller may see.
func (s *Service) visibleImages(ctx context.Context) ([]api.Image, error) {
	ims, err := s.d.Store.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := ims[:0]
	for _, im := range ims {
		if visible(ctx, im) {
			out = append(out, im)
		}
	}
	return out, nil
}

// unavailable is the refusal of a name another user's image holds: it
// says no more than that the name is taken.
func unavailable(name string) error {
	return fmt.Errorf("image name %q is not available: pick another name: %w", name, errdefs.ErrConflict)
}

// claimable checks that a user-made image (register, promote) may take
// name. Catalog names are the catalog's, so that no private image ever
// stands in the way of another user's pull of a catalog image.
func (s *Service) claimable(ctx context.Context, name string) error {
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("check image name %s against the catalog: %w", name, err)
	}
	if _, ok := imagecat.Find(es, name); ok {
		return fmt.Errorf("image name %q belongs to the image catalog (`banger image pull %s` fetches it): pick another name: %w", name, name, errdefs.ErrConflict)
	}
	_, hidden, err := s.lookup(ctx, name)
	switch {
	case err == nil:
		return fmt.Errorf("image %q already exists: remove it first with `banger image rm %s`, or pick another name: %w", name, name, errdefs.ErrConflict)
	case hidden:
		return unavailable(name)
	case errors.Is(err, errdefs.ErrNotFound):
		return nil
	}
	return err
}

// mayRemove says whether ctx's caller may remove im, which it sees:
// anyone a pulled one (a cache), only the owner or root a user-made one.
func mayRemove(ctx context.Context, im api.Image) error {
	if userMade(im) && !peer.Owns(ctx, im.Owner) {
		return fmt.Errorf("image %q was made by another user: only they or root may remove it: %w", im.Name, errdefs.ErrPermission)
	}
	return nil
}

// inUse is rm's refusal while VMs or snapshots use an image: it names
// the caller's own and only counts other users'.
func inUse(ctx context.Context, name string, ds []api.Dependent) error {
	mine := func(owner uint32) bool { return peer.Owns(ctx, owner) }
	return fmt.Errorf("image %q is in use by %s: it can be removed once none uses it: %w", name, names.InUse(ds, mine), errdefs.ErrConflict)
}

// Share makes an image every caller sees: its owner or root may. An
// image already shared is returned as is.
func (s *Service) Share(ctx context.Context, name string) (api.Image, error) {
	if err := names.Validate("image", name); err != nil {
		return api.Image{}, err
	}
	unlock, err := s.names.Lock(ctx, name, nil)
	if err != nil {
		return api.Image{}, err
	}
	defer unlock()
	im, _, err := s.lookup(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return api.Image{}, s.notFound(ctx, name, "no local image")
	} else if err != nil {
		return api.Image{}, err
	}
	// A private image the caller sees is its own (or the caller is root).
	if im.Shared {
		return s.withDisk(im), nil
	}
	if err := s.d.Store.ShareImage(ctx, name); err != nil {
		return api.Image{}, fmt.Errorf("share image %s: %w", name, err)
	}
	im.Shared = true
	return s.withDisk(im), nil
}

type sharedKey struct{}

// WithShared returns ctx asking Adopt to publish its image shared (or
// not). A promote request's Shared reaches Adopt this way because the
// VM service's view of Adopt has no place for it.
func WithShared(ctx context.Context, shared bool) context.Context {
	return context.WithValue(ctx, sharedKey{}, shared)
}

// sharedFrom is what WithShared put in ctx: private by default.
func sharedFrom(ctx context.Context) bool {
	shared, _ := ctx.Value(sharedKey{}).(bool)
	return shared
}
