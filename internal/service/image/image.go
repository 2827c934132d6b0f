// Package image is the ImageService: pulling OCI images, bundles and
// locally built root file systems into bootable ext4 disks, registering
// existing ones, and publishing them atomically.
package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/format/registry"
	"github.com/banger-dev/banger/internal/kit/keyedlock"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/revert"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/fetch"
	"github.com/banger-dev/banger/internal/service/image/imagecat"
	"github.com/banger-dev/banger/internal/service/publish"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Store is what the service needs of the database.
type Store interface {
	InsertImage(ctx context.Context, im api.Image) error
	GetImage(ctx context.Context, name string) (api.Image, error)
	ListImages(ctx context.Context) ([]api.Image, error)
	DeleteImage(ctx context.Context, name string) error
	ShareImage(ctx context.Context, name string) error
}

// Users reports which VMs and snapshots use an image, whoever owns them,
// so that rm can refuse, and drops what was made from an image once it
// is removed (its templates).
type Users interface {
	VMsUsingImage(ctx context.Context, image string) ([]api.Dependent, error)
	ForgetImage(ctx context.Context, image string)
}

// Kernels makes sure a kernel is local, pulling it from its catalog.
type Kernels interface {
	Ensure(ctx context.Context, name string, p operation.Progress) (api.Kernel, error)
}

// Images resolves OCI references.
type Images interface {
	Image(ctx context.Context, ref string, report func(string)) (registry.Resolved, error)
}

// Downloader fetches a URL into a file.
type Downloader interface {
	FetchFile(ctx context.Context, url, dest, sha256 string, p operation.Progress) (digest string, err error)
}

// Deps are the service's dependencies.
type Deps struct {
	Store      Store
	Users      Users
	Kernels    Kernels
	Catalog    func(ctx context.Context) ([]api.ImageCatalogEntry, error)
	Registry   Images
	Downloader Downloader
	Runner     runner.Runner
	Layout     layout.Layout
	// DefaultKernel is used for images pulled by reference.
	DefaultKernel string
	// MaxUnpacked bounds what one image's layers may decompress to.
	MaxUnpacked int64
	// DiskSize is the smallest file system images are built with (the
	// default VM disk size).
	DiskSize int64
	// Finalize says what to put into every image.
	Finalize Finalize
	// Uploads holds the files clients send to register.
	Uploads Uploads
	Log     *slog.Logger
}

// Uploads finds what clients sent (see package upload).
type Uploads interface {
	Path(ctx context.Context, id, kind string) (string, error)
	Remove(id string)
}

// Service manages images.
type Service struct {
	d     Deps
	ext4  ext4.Builder
	names keyedlock.Locks // serializes all work on one image name
	pub   *publish.Publisher
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{
		d:    d,
		ext4: ext4.Builder{Runner: d.Runner, MinSize: d.DiskSize},
		pub:  &publish.Publisher{Kind: "image", Staging: d.Layout.Staging(), Root: d.Layout.Images(), Log: d.Log},
	}
}

// Recover removes what interrupted work left behind.
func (s *Service) Recover(ctx context.Context) error {
	ims, err := s.d.Store.ListImages(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, im := range ims {
		known[im.Name] = true
	}
	return s.pub.Recover(known)
}

func (s *Service) withDisk(im api.Image) api.Image {
	im.Disk = filepath.Join(s.pub.Dir(im.Name), layout.ImageRootfs)
	im.Stored = stored(s.pub.Dir(im.Name))
	return im
}

// stored is what an image's files take on the host: its disks are mostly
// holes (a file system of default_disk with a few hundred MiB in it), so
// this, not their size, is what pulling it cost.
func stored(dir string) int64 {
	var n int64
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, e.Name()), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// Count returns how many published images ctx's caller sees.
func (s *Service) Count(ctx context.Context) (int, error) {
	ims, err := s.visibleImages(ctx)
	return len(ims), err
}

// List returns the published images ctx's caller sees.
func (s *Service) List(ctx context.Context) ([]api.Image, error) {
	ims, err := s.visibleImages(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ims {
		ims[i] = s.withDisk(ims[i])
	}
	return ims, nil
}

// Get returns one published image ctx's caller sees.
func (s *Service) Get(ctx context.Context, name string) (api.Image, error) {
	if err := names.Validate("image", name); err != nil {
		return api.Image{}, err
	}
	im, _, err := s.lookup(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return api.Image{}, s.notFound(ctx, name, "no local image")
	}
	if err != nil {
		return api.Image{}, err
	}
	return s.withDisk(im), nil
}

// Catalog returns the catalog entries, each marked local or not (for
// ctx's caller).
func (s *Service) Catalog(ctx context.Context) ([]api.ImageCatalogEntry, error) {
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	ims, err := s.visibleImages(ctx)
	if err != nil {
		return nil, err
	}
	local := map[string]bool{}
	for _, im := range ims {
		local[im.Name] = true
	}
	for i := range es {
		es[i].Local = local[es[i].Name]
	}
	return es, nil
}

// notFound builds a not-found error naming close matches among the
// catalog's names and the images ctx's caller sees: never another's.
func (s *Service) notFound(ctx context.Context, name, where string) error {
	var cands []string
	if es, err := s.d.Catalog(ctx); err == nil {
		for _, e := range es {
			cands = append(cands, e.Name)
		}
	}
	if ims, err := s.visibleImages(ctx); err == nil {
		for _, im := range ims {
			cands = append(cands, im.Name)
		}
	}
	hint := names.Hint(name, cands, "see `banger image catalog` and `banger image ls`")
	return fmt.Errorf("%s named %q (%s): %w", where, name, hint, errdefs.ErrNotFound)
}

// target is what a pull request resolves to.
type target struct {
	name   string
	kernel string
	// Exactly one of entry (a catalog image) or ref (an OCI reference).
	entry *api.ImageCatalogEntry
	ref   string
}

// IsReference reports whether s names an OCI image rather than a catalog
// entry: references have a registry, a repository path, a tag or a digest.
func IsReference(s string) bool {
	return strings.ContainsAny(s, "/:@")
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9._-]+`)

// NameFromRef derives a local image name from an OCI reference:
// "127.0.0.1:5000/tools/busybox:1.36" becomes "busybox-1.36".
func NameFromRef(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	repo := r.Context().RepositoryStr()
	n := repo[strings.LastIndex(repo, "/")+1:]
	switch t := r.(type) {
	case name.Tag:
		if t.TagStr() != "latest" {
			n += "-" + t.TagStr()
		}
	case name.Digest:
		n += "-" + strings.TrimPrefix(t.DigestStr(), "sha256:")[:12]
	}
	n = strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(n), "-"), "-._")
	if len(n) > names.MaxLen {
		n = n[:names.MaxLen]
	}
	return n
}

func (s *Service) resolve(ctx context.Context, req api.ImagePullRequest) (target, error) {
	if req.Name == "" {
		return target{}, fmt.Errorf("image name or reference is empty: %w", errdefs.ErrInvalid)
	}
	if req.Kernel != "" {
		if err := names.Validate("kernel", req.Kernel); err != nil {
			return target{}, err
		}
	}
	if IsReference(req.Name) {
		if _, err := name.ParseReference(req.Name); err != nil {
			return target{}, fmt.Errorf("image reference %q: %v: %w", req.Name, err, errdefs.ErrInvalid)
		}
		t := target{name: req.As, ref: req.Name, kernel: req.Kernel}
		if t.name == "" {
			t.name = NameFromRef(req.Name)
		}
		if err := names.Validate("image", t.name); err != nil {
			return target{}, fmt.Errorf("%w (choose a name with --name)", err)
		}
		if t.kernel == "" {
			t.kernel = s.d.DefaultKernel
		}
		return t, nil
	}
	if err := names.Validate("image", req.Name); err != nil {
		return target{}, err
	}
	if req.As != "" && req.As != req.Name {
		return target{}, fmt.Errorf("--name only applies to pulls by reference: %w", errdefs.ErrInvalid)
	}
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return target{}, err
	}
	e, ok := imagecat.Find(es, req.Name)
	if !ok {
		if _, _, err := s.lookup(ctx, req.Name); err == nil {
			return target{name: req.Name}, nil
		}
		return target{}, s.notFound(ctx, req.Name, "no image catalog entry")
	}
	t := target{name: e.Name, entry: &e, kernel: e.Kernel}
	if req.Kernel != "" {
		t.kernel = req.Kernel
	}
	return t, nil
}

// CheckPull answers quickly whether Pull can start.
func (s *Service) CheckPull(ctx context.Context, req api.ImagePullRequest) error {
	_, err := s.resolve(ctx, req)
	return err
}

// Ensure returns the named image, pulling it from the catalog when it is
// not local. It is the seam VM creation uses, which then makes the
// kernel the VM boots local (the image's, or another the user named: so
// the image's own is not pulled for a VM that does not boot it).
//
// name may also be an OCI reference, as with `docker run`: the image is
// then looked up under the name a pull by reference gives it.
//
// An image of that name ctx's caller may not see is, to it, one that does
// not exist: not found, and neither pulled nor overwritten.
func (s *Service) Ensure(ctx context.Context, name string, p operation.Progress) (api.Image, error) {
	local, from := name, "the image catalog"
	if IsReference(name) {
		local, from = NameFromRef(name), name
		if err := names.Validate("image", local); err != nil {
			return api.Image{}, fmt.Errorf("image reference %q: %w", name, err)
		}
	} else if err := names.Validate("image", name); err != nil {
		return api.Image{}, err
	}
	im, hidden, err := s.lookup(ctx, local)
	switch {
	case err == nil:
		im = s.withDisk(im)
	case hidden && IsReference(name):
		return api.Image{}, s.notFound(ctx, local, "no local image")
	case hidden:
		// What Pull answers for a name that is not in the catalog.
		return api.Image{}, s.notFound(ctx, local, "no image catalog entry")
	case errors.Is(err, errdefs.ErrNotFound):
		p.Stage("image", "image %s is not local: pulling it from %s", local, from)
		im, err = s.Pull(ctx, api.ImagePullRequest{Name: name}, p)
	}
	return im, err
}

// Pull publishes an image from the catalog or an OCI reference, shared:
// pulled images are a cache every caller uses. An image already published
// is returned as is; a name another user's private image holds is
// refused.
func (s *Service) Pull(ctx context.Context, req api.ImagePullRequest, p operation.Progress) (api.Image, error) {
	t, err := s.resolve(ctx, req)
	if err != nil {
		return api.Image{}, err
	}
	unlock, err := s.names.Lock(ctx, t.name, func() {
		p.Stage("wait", "another operation on image %s is running: waiting for it", t.name)
	})
	if err != nil {
		return api.Image{}, err
	}
	defer unlock()
	if im, hidden, err := s.lookup(ctx, t.name); err == nil {
		p.Stage("done", "image %s is already local", t.name)
		return s.withDisk(im), nil
	} else if hidden {
		return api.Image{}, unavailable(t.name)
	}
	if t.ref != "" {
		p.Stage("source", "image %s: pulling %s", t.name, t.ref)
		return s.build(ctx, t.name, t.kernel, true, p, func(ctx context.Context, dir string) (built, error) {
			return s.pullOCI(ctx, t.ref, dir, p)
		})
	}
	return fetch.FirstOf(ctx, fetch.Target{Kind: "image", Name: t.name, Log: s.d.Log}, t.entry.Sources, imagecat.Describe,
		func(ctx context.Context, src api.ImageSource) (api.Image, error) {
			return s.build(ctx, t.name, t.kernel, true, p, func(ctx context.Context, dir string) (built, error) {
				return s.fetch(ctx, src, dir, p)
			})
		}, p)
}

func (s *Service) fetch(ctx context.Context, src api.ImageSource, dir string, p operation.Progress) (built, error) {
	switch src.Kind {
	case api.SourceOCI:
		return s.pullOCI(ctx, src.Ref, dir, p)
	case api.SourceDebootstrap:
		return s.debootstrap(ctx, src, dir, p)
	case api.SourceBundle:
		return s.pullBundle(ctx, src, dir, p)
	}
	return built{}, fmt.Errorf("unknown source kind %q: %w", src.Kind, errdefs.ErrInvalid)
}

// built is what a source left in a staging directory: rootfs.ext4, checked.
type built struct {
	sourceKind, source, digest string
	layers, files              int
	kernel                     string // a bundle's own kernel, when it names one
}

// build runs fill in a staging directory and publishes the result, owned
// by ctx's caller and shared or not.
func (s *Service) build(ctx context.Context, name, kernel string, shared bool, p operation.Progress, fill func(context.Context, string) (built, error)) (api.Image, error) {
	var im api.Image
	dir, done, err := s.pub.Stage(name)
	if err != nil {
		return im, err
	}
	r := revert.New()
	defer r.Fail()
	r.Add(func() { done(errUnpublished) })
	b, err := fill(ctx, dir)
	if err != nil {
		return im, err
	}
	if b.kernel != "" {
		kernel = b.kernel
	}
	fi, err := os.Stat(filepath.Join(dir, layout.ImageRootfs))
	if err != nil {
		return im, fmt.Errorf("no root disk was produced: %w", err)
	}
	im = api.Image{
		Name: name, SourceKind: b.sourceKind, Source: b.source, Digest: b.digest, Kernel: kernel,
		Size: fi.Size(), Layers: b.layers, Files: b.files, CreatedAt: time.Now().UTC(),
		Owner: peer.UID(ctx), Shared: shared,
	}
	if err := ctx.Err(); err != nil {
		return im, err
	}
	p.Stage("publish", "publishing image %s", name)
	if err := s.pub.Publish(ctx, dir, name, func(ctx context.Context) error { return s.d.Store.InsertImage(ctx, im) }); err != nil {
		return im, err
	}
	r.Success()
	return s.withDisk(im), nil
}

// errUnpublished is the error build's undo hands the staging directory's
// done, which removes the directory for any error.
var errUnpublished = errors.New("image not published")

// Remove deletes an image no VM or snapshot uses, whoever owns them. A
// pulled image is a cache any caller may remove; a user-made one only
// its owner or root.
func (s *Service) Remove(ctx context.Context, name string) error {
	if err := names.Validate("image", name); err != nil {
		return err
	}
	unlock, err := s.names.Lock(ctx, name, nil)
	if err != nil {
		return err
	}
	defer unlock()
	im, _, err := s.lookup(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return s.notFound(ctx, name, "no local image")
	} else if err != nil {
		return err
	}
	if err := mayRemove(ctx, im); err != nil {
		return err
	}
	if s.d.Users != nil {
		ds, err := s.d.Users.VMsUsingImage(ctx, name)
		if err != nil {
			return fmt.Errorf("remove image %s: %w", name, err)
		}
		if len(ds) > 0 {
			return inUse(ctx, name, ds)
		}
	}
	if err := s.pub.Remove(ctx, name, func(ctx context.Context) error { return s.d.Store.DeleteImage(ctx, name) }); err != nil {
		return err
	}
	if s.d.Users != nil {
		s.d.Users.ForgetImage(ctx, name)
	}
	return nil
}
