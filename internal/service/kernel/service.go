// Package kernel is the KernelService: the catalog, pulling, importing,
// listing and removing kernels, with atomic publication into the state
// directory.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/banger-dev/banger/internal/format/registry"
	"github.com/banger-dev/banger/internal/kit/keyedlock"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/revert"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/fetch"
	"github.com/banger-dev/banger/internal/service/publish"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Store is what the service needs of the database.
type Store interface {
	InsertKernel(ctx context.Context, k api.Kernel) error
	GetKernel(ctx context.Context, name string) (api.Kernel, error)
	ListKernels(ctx context.Context) ([]api.Kernel, error)
	DeleteKernel(ctx context.Context, name string) error
	ShareKernel(ctx context.Context, name string) error
}

// Users reports which VMs and snapshots use a kernel, whoever owns them,
// so that rm can refuse, and drops what was made with a kernel once it
// is removed (its templates).
type Users interface {
	VMsUsingKernel(ctx context.Context, kernel string) ([]api.Dependent, error)
	ForgetKernel(ctx context.Context, kernel string)
}

// Catalog returns the merged kernel catalog.
type Catalog func(ctx context.Context) ([]api.KernelCatalogEntry, error)

// Downloader fetches a URL into a file.
type Downloader interface {
	FetchFile(ctx context.Context, url, dest, sha256 string, p operation.Progress) (digest string, err error)
}

// Images resolves OCI references.
type Images interface {
	Image(ctx context.Context, ref string, report func(string)) (registry.Resolved, error)
}

// Deps are the service's dependencies.
type Deps struct {
	Store      Store
	Users      Users
	Catalog    Catalog
	Runner     runner.Runner
	Downloader Downloader
	Images     Images
	Layout     layout.Layout
	// MaxUnpacked bounds what one kernel may unpack to.
	MaxUnpacked int64
	// Uploads holds the files clients send for import.
	Uploads Uploads
	Log     *slog.Logger
}

// Uploads finds what clients sent (see package upload).
type Uploads interface {
	Path(ctx context.Context, id, kind string) (string, error)
	Remove(id string)
}

// Service manages kernels.
type Service struct {
	d Deps
	// names serializes all work on one kernel name: two pulls of the same
	// kernel download once, and rm never races a publication.
	names keyedlock.Locks
	pub   *publish.Publisher
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d, pub: &publish.Publisher{Kind: "kernel", Staging: d.Layout.Staging(), Root: d.Layout.Kernels(), Log: d.Log}}
}

// Recover runs at daemon start: it removes staging leftovers of work that
// was interrupted (a crash, SIGKILL) and kernel directories that were never
// recorded, so nothing half-made is ever listed or kept.
func (s *Service) Recover(ctx context.Context) error {
	ks, err := s.d.Store.ListKernels(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, k := range ks {
		known[k.Name] = true
	}
	return s.pub.Recover(known)
}

// Count returns how many published kernels ctx's caller sees.
func (s *Service) Count(ctx context.Context) (int, error) {
	ks, err := s.visibleKernels(ctx)
	return len(ks), err
}

// List returns the published kernels ctx's caller sees.
func (s *Service) List(ctx context.Context) ([]api.Kernel, error) {
	ks, err := s.visibleKernels(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ks {
		ks[i].Dir = s.d.Layout.Kernel(ks[i].Name)
	}
	return ks, nil
}

// Get returns one published kernel ctx's caller sees.
func (s *Service) Get(ctx context.Context, name string) (api.Kernel, error) {
	if err := names.Validate("kernel", name); err != nil {
		return api.Kernel{}, err
	}
	k, _, err := s.lookup(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return api.Kernel{}, s.notFound(ctx, name, false)
	}
	return k, err
}

// Catalog returns the catalog entries, each marked local or not (for
// ctx's caller).
func (s *Service) Catalog(ctx context.Context) ([]api.KernelCatalogEntry, error) {
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	ks, err := s.visibleKernels(ctx)
	if err != nil {
		return nil, err
	}
	local := map[string]bool{}
	for _, k := range ks {
		local[k.Name] = true
	}
	for i := range es {
		es[i].Local = local[es[i].Name]
	}
	return es, nil
}

// notFound builds a not-found error naming close matches among the
// catalog's names and the kernels ctx's caller sees: never another's.
func (s *Service) notFound(ctx context.Context, name string, inCatalog bool) error {
	var cands []string
	if es, err := s.d.Catalog(ctx); err == nil {
		for _, e := range es {
			cands = append(cands, e.Name)
		}
	}
	if ks, err := s.visibleKernels(ctx); err == nil {
		for _, k := range ks {
			cands = append(cands, k.Name)
		}
	}
	where := "no local kernel"
	hint := "see `banger kernel ls`, or pull one with `banger kernel pull NAME`"
	if inCatalog {
		where = "no kernel catalog entry"
		hint = "see `banger kernel catalog`"
	}
	hint = names.Hint(name, cands, hint)
	return fmt.Errorf("%s named %q (%s): %w", where, name, hint, errdefs.ErrNotFound)
}

// Remove deletes a kernel no VM or snapshot uses, whoever owns them. A
// pulled kernel is a cache any caller may remove; an imported one only
// its owner or root.
func (s *Service) Remove(ctx context.Context, name string) error {
	if err := names.Validate("kernel", name); err != nil {
		return err
	}
	unlock, err := s.names.Lock(ctx, name, nil)
	if err != nil {
		return err
	}
	defer unlock()
	k, _, err := s.lookup(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return s.notFound(ctx, name, false)
	} else if err != nil {
		return err
	}
	if err := mayRemove(ctx, k); err != nil {
		return err
	}
	if s.d.Users != nil {
		ds, err := s.d.Users.VMsUsingKernel(ctx, name)
		if err != nil {
			return fmt.Errorf("remove kernel %s: %w", name, err)
		}
		if len(ds) > 0 {
			return inUse(ctx, name, ds)
		}
	}
	if err := s.pub.Remove(ctx, name, func(ctx context.Context) error {
		return s.d.Store.DeleteKernel(ctx, name)
	}); err != nil {
		return err
	}
	if s.d.Users != nil {
		s.d.Users.ForgetKernel(ctx, name)
	}
	return nil
}

// Ensure returns the named kernel, pulling it from the catalog first when
// it is not local. It is the seam VM creation uses.
//
// A kernel of that name ctx's caller may not see is, to it, one that does
// not exist: not found, and neither pulled nor overwritten.
func (s *Service) Ensure(ctx context.Context, name string, p operation.Progress) (api.Kernel, error) {
	if err := names.Validate("kernel", name); err != nil {
		return api.Kernel{}, err
	}
	k, hidden, err := s.lookup(ctx, name)
	switch {
	case err == nil:
		return k, nil
	case hidden:
		// What Pull answers for a name that is not in the catalog.
		return api.Kernel{}, s.notFound(ctx, name, true)
	case !errors.Is(err, errdefs.ErrNotFound):
		return api.Kernel{}, err
	}
	p.Stage("kernel", "kernel %s is not local: pulling it from the kernel catalog", name)
	return s.Pull(ctx, name, p)
}

// CheckPull answers quickly whether Pull of name can start: the name is
// valid and known to the catalog or already local.
func (s *Service) CheckPull(ctx context.Context, name string) error {
	if err := names.Validate("kernel", name); err != nil {
		return err
	}
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Name == name {
			return nil
		}
	}
	if _, _, err := s.lookup(ctx, name); err == nil {
		return nil
	}
	return s.notFound(ctx, name, true)
}

// CheckImport answers quickly whether Import of req can start; a refused
// request's uploads are dropped.
func (s *Service) CheckImport(ctx context.Context, req api.KernelImportRequest) error {
	r := revert.New()
	defer r.Fail()
	r.Add(func() { s.dropUploads(req) })
	if err := names.Validate("kernel", req.Name); err != nil {
		return err
	}
	if _, err := s.resolve(ctx, req); err != nil {
		return err
	}
	if err := s.claimable(ctx, req.Name); err != nil {
		return err
	}
	r.Success()
	return nil
}

// Pull publishes the named catalog kernel, trying its sources in order,
// shared: pulled kernels are a cache every caller uses. A kernel already
// published is returned as is; a name another user's private kernel
// holds is refused.
func (s *Service) Pull(ctx context.Context, name string, p operation.Progress) (api.Kernel, error) {
	if err := names.Validate("kernel", name); err != nil {
		return api.Kernel{}, err
	}
	es, err := s.d.Catalog(ctx)
	if err != nil {
		return api.Kernel{}, err
	}
	var entry *api.KernelCatalogEntry
	for i := range es {
		if es[i].Name == name {
			entry = &es[i]
		}
	}
	if entry == nil {
		if k, err := s.Get(ctx, name); err == nil {
			p.Stage("done", "kernel %s is already local (imported, not in the catalog)", name)
			return k, nil
		}
		return api.Kernel{}, s.notFound(ctx, name, true)
	}
	unlock, err := s.names.Lock(ctx, name, func() {
		p.Stage("wait", "another pull of kernel %s is running: waiting for it", name)
	})
	if err != nil {
		return api.Kernel{}, err
	}
	defer unlock()
	if k, hidden, err := s.lookup(ctx, name); err == nil {
		p.Stage("done", "kernel %s is already local", name)
		return k, nil
	} else if hidden {
		return api.Kernel{}, unavailable(name)
	}

	k, err := fetch.FirstOf(ctx, fetch.Target{Kind: "kernel", Name: name, Log: s.d.Log}, entry.Sources, describe,
		func(ctx context.Context, src api.KernelSource) (api.Kernel, error) {
			return s.stageAndPublish(ctx, name, true, p, func(ctx context.Context, dir string) (staged, error) {
				return s.fetch(ctx, src, dir, p)
			})
		}, p)
	if err != nil {
		return api.Kernel{}, err
	}
	if k.Version == "" {
		k.Version = entry.Version
	}
	return k, nil
}

// Import publishes a kernel from files the client sent. It is the
// caller's, private unless the request shares it.
func (s *Service) Import(ctx context.Context, req api.KernelImportRequest, p operation.Progress) (api.Kernel, error) {
	if err := names.Validate("kernel", req.Name); err != nil {
		return api.Kernel{}, err
	}
	defer s.dropUploads(req)
	files, err := s.resolve(ctx, req)
	if err != nil {
		return api.Kernel{}, err
	}
	unlock, err := s.names.Lock(ctx, req.Name, func() {
		p.Stage("wait", "another operation on kernel %s is running: waiting for it", req.Name)
	})
	if err != nil {
		return api.Kernel{}, err
	}
	defer unlock()
	if err := s.claimable(ctx, req.Name); err != nil {
		return api.Kernel{}, err
	}
	return s.stageAndPublish(ctx, req.Name, req.Shared, p, func(ctx context.Context, dir string) (staged, error) {
		return s.importFiles(ctx, req, files, dir, p)
	})
}

// staged is what a source left in a staging directory.
type staged struct {
	version    string
	sourceKind string
	source     string
	digest     string
}

// stageAndPublish runs fill in a fresh staging directory, verifies what it
// left, then publishes it, owned by ctx's caller and shared or not. On any
// failure the staging directory goes away.
func (s *Service) stageAndPublish(ctx context.Context, name string, shared bool, p operation.Progress, fill func(context.Context, string) (staged, error)) (api.Kernel, error) {
	var k api.Kernel
	dir, done, err := s.pub.Stage(name)
	if err != nil {
		return k, err
	}
	r := revert.New()
	defer r.Fail()
	r.Add(func() { done(errUnpublished) })
	st, err := fill(ctx, dir)
	if err != nil {
		return k, err
	}
	p.Stage("verify", "verifying kernel files")
	k, err = inspect(dir)
	if err != nil {
		return k, err
	}
	k.Name, k.Version, k.SourceKind, k.Source, k.Digest = name, st.version, st.sourceKind, st.source, st.digest
	k.Arch = "x86_64"
	k.CreatedAt = time.Now().UTC()
	k.Owner, k.Shared = peer.UID(ctx), shared
	if err := ctx.Err(); err != nil {
		return k, err
	}
	p.Stage("publish", "publishing kernel %s", name)
	err = s.pub.Publish(ctx, dir, name, func(ctx context.Context) error { return s.d.Store.InsertKernel(ctx, k) })
	if err != nil {
		return k, err
	}
	r.Success()
	k.Dir = s.d.Layout.Kernel(name)
	return k, nil
}

// errUnpublished is the error stageAndPublish's undo hands the staging
// directory's done, which removes the directory for any error.
var errUnpublished = errors.New("kernel not published")

func describe(src api.KernelSource) string {
	switch src.Kind {
	case api.SourceApt:
		return "apt " + src.Package
	case api.SourceOCI:
		return "oci " + src.Ref
	default:
		return src.Kind + " " + src.URL
	}
}
