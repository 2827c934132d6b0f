// Package vmwork is what is done with a VM's contents rather than its
// lifecycle: its /work brought back, credentials lent to it, its root
// disk promoted to an image. It reaches VMs through the VM service's
// records and locks (VMs), so that a VM does not start or stop half-way
// through.
package vmwork

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/image"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/service/vm/lent"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/service/workspace"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
	"golang.org/x/crypto/ssh"
)

// VMs is what vmwork needs of the VM service: the caller's VMs' records
// (another user's answers not found), under the VM's lock when it acts.
type VMs interface {
	Record(ctx context.Context, name string) (store.VM, error)
	LockedRecord(ctx context.Context, name string, p operation.Progress) (store.VM, func(), error)
	View(v store.VM) api.VM
	// Note adds to a VM's activity record.
	Note(ctx context.Context, vm string, ev api.ActivityEvent)
}

// WorkExport reads a VM's work disk as tar: a stopped VM's from its
// disk, a running guest's from its agent, checked.
type WorkExport interface {
	ExportDisk(ctx context.Context, disk string, w io.Writer) error
	ExportGuest(ctx context.Context, c *ssh.Client, diskBytes int64, w io.Writer) error
}

// GuestDisks reads disks guests wrote, in a sandbox, as checked tar.
type GuestDisks interface {
	Tar(ctx context.Context, disk string, o ext4read.Options, w io.Writer) (ext4read.Skipped, error)
}

// Deps are what vmwork needs.
type Deps struct {
	VMs   VMs
	Store interface {
		UpdateVM(ctx context.Context, v store.VM) error
	}
	Work WorkExport
	// GuestDisks reads a promoted VM's root disk; MaxPromoteEntries
	// bounds its entries.
	GuestDisks        GuestDisks
	MaxPromoteEntries int
	Images            interface {
		Get(ctx context.Context, name string) (api.Image, error)
		Adopt(ctx context.Context, name, kernel, source string, fill func(ctx context.Context, dst string) error, p operation.Progress) (api.Image, error)
	}
	Driver    vmm.Driver
	Runner    runner.Runner
	Layout    layout.Layout
	Key       ssh.Signer // the daemon's, which every guest accepts
	DiskBytes int64      // the default disk size: a promoted image's least
	Log       *slog.Logger
}

// Service does it.
type Service struct{ d Deps }

// New returns a Service.
func New(d Deps) *Service { return &Service{d: d} }

// withWork takes the VM's lock and returns its record, refusing a VM
// without a work disk.
func (s *Service) withWork(ctx context.Context, name string) (store.VM, func(), error) {
	v, unlock, err := s.d.VMs.LockedRecord(ctx, name, operation.Discard)
	if err != nil {
		return v, nil, err
	}
	if v.Work == nil {
		unlock()
		return v, nil, noWork(name)
	}
	return v, unlock, nil
}

func noWork(name string) error {
	return fmt.Errorf("vm %s has no work disk: it was created outside a directory to seed, or with --no-workdir: %w", name, errdefs.ErrNotFound)
}

// ExportWork writes the VM's /work to w as a tar stream: from the guest
// agent while the VM runs, from the disk (without booting it, without
// changing it) when it is stopped. The VM's lock is held throughout, so
// that it does not start or stop half-way.
func (s *Service) ExportWork(ctx context.Context, name string, w io.Writer) error {
	v, unlock, err := s.withWork(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	switch v.State {
	case api.VMStopped:
		return s.d.Work.ExportDisk(ctx, filepath.Join(s.d.Layout.VM(name), workspace.DiskName), w)
	case api.VMRunning:
		c, err := guestboot.Dial(ctx, v, s.d.Key)
		if err != nil {
			return err
		}
		defer c.Close()
		return s.d.Work.ExportGuest(ctx, c, v.Work.DiskBytes, w)
	default:
		return fmt.Errorf("vm %s is %s: try again once it is running or stopped: %w", name, v.State, errdefs.ErrConflict)
	}
}

// CheckWork answers quickly whether ExportWork can start.
func (s *Service) CheckWork(ctx context.Context, name string) error {
	v, err := s.d.VMs.Record(ctx, name)
	if err != nil {
		return err
	}
	if v.Work == nil {
		return noWork(name)
	}
	return nil
}

// WorkPulled records that the VM's work was brought back as a branch, so
// that removing the VM no longer asks for --force.
func (s *Service) WorkPulled(ctx context.Context, name string, req api.WorkPulled) (api.VM, error) {
	if len(req.Branch) > 1024 || len(req.Commit) > 64 || strings.ContainsAny(req.Branch+req.Commit, "\x00\n") {
		return api.VM{}, fmt.Errorf("bad branch or commit: %w", errdefs.ErrInvalid)
	}
	v, unlock, err := s.withWork(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	v.Work.PulledAt, v.Work.PulledBranch, v.Work.PulledCommit = time.Now().UTC(), req.Branch, req.Commit
	if err := s.d.Store.UpdateVM(ctx, v); err != nil {
		return api.VM{}, err
	}
	s.d.Log.Info("work pulled", "vm", name, "branch", req.Branch, "commit", req.Commit)
	s.d.VMs.Note(ctx, name, api.ActivityEvent{Kind: api.ActLifecycle, Action: "pull", Detail: fmt.Sprintf("work pulled as branch %s at %.12s", req.Branch, req.Commit)})
	return s.d.VMs.View(v), nil
}

// Bounds of one auth sync: credentials are small.
const (
	maxLentFiles = 64
	maxLentBytes = 1 << 20
)

// CheckAuthSync validates what is to be lent.
func CheckAuthSync(req api.AuthSync) error {
	if len(req.Files) > maxLentFiles {
		return fmt.Errorf("%d files to lend: at most %d: %w", len(req.Files), maxLentFiles, errdefs.ErrInvalid)
	}
	total := 0
	for _, f := range req.Files {
		if _, err := guestproto.HomePath(f.Path); err != nil {
			return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
		}
		total += len(f.Data)
	}
	for k, v := range req.Env {
		if !guestproto.EnvName(k) || strings.ContainsRune(v, 0) {
			return fmt.Errorf("lent variable %q: not a variable name: %w", k, errdefs.ErrInvalid)
		}
		total += len(k) + len(v)
	}
	if total > maxLentBytes {
		return fmt.Errorf("%d bytes to lend: at most %d: %w", total, maxLentBytes, errdefs.ErrInvalid)
	}
	return nil
}

// AuthSync lends a running guest the files and variables in req, through
// its agent: the files land on a tmpfs, so they never reach a disk. Only
// their names are kept, to show, and only for this boot of the VM.
func (s *Service) AuthSync(ctx context.Context, name string, req api.AuthSync) (api.VM, error) {
	if err := CheckAuthSync(req); err != nil {
		return api.VM{}, err
	}
	v, unlock, err := s.d.VMs.LockedRecord(ctx, name, operation.Discard)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	if v.State != api.VMRunning {
		return api.VM{}, fmt.Errorf("vm %s is %s: credentials are lent to a running VM: %w", name, v.State, errdefs.ErrConflict)
	}
	msg := guestproto.AuthSync{User: "root", Files: map[string][]byte{}, Env: req.Env}
	var names []string
	for _, f := range req.Files {
		msg.Files[path.Clean(f.Path)] = f.Data
		names = append(names, "~/"+path.Clean(f.Path))
	}
	for k := range req.Env {
		names = append(names, "$"+k)
	}
	sort.Strings(names)
	c, err := guestboot.Dial(ctx, v, s.d.Key)
	if err != nil {
		return api.VM{}, err
	}
	defer c.Close()
	if err := guestboot.Lend(c, msg); err != nil {
		return api.VM{}, fmt.Errorf("lend credentials to vm %s: %w", name, err)
	}
	if err := lent.Add(s.d.Layout.VM(v.Name), v, names); err != nil {
		return api.VM{}, err
	}
	s.d.Log.Info("lent credentials", "vm", name, "names", names)
	s.d.VMs.Note(ctx, name, api.ActivityEvent{Kind: api.ActFile, Action: "lend", Names: names, Detail: "lent for this boot (names only)"})
	return s.d.VMs.View(v), nil
}

// identity are what makes a guest this VM rather than any VM of its
// image, left out of a promoted disk so that each VM of the new image
// makes its own: the agent's SSH host key (made at first boot), an SSH
// server's host keys, the machine ID and the random seed. Authorized keys
// given to the VM travel on its kernel command line and lent credentials
// live on a tmpfs, so neither is on the disk. Patterns of path.Match,
// relative to the root.
var identity = []string{
	".banger/ssh_host_ed25519_key",
	".banger/ssh_host_ed25519_key.pub",
	"etc/ssh/ssh_host_*",
	"etc/machine-id",
	"var/lib/dbus/machine-id",
	"var/lib/systemd/random-seed",
}

// CheckPromote answers quickly whether Promote can start.
func (s *Service) CheckPromote(ctx context.Context, req api.ImagePromoteRequest) error {
	if err := names.Validate("image", req.Name); err != nil {
		return err
	}
	if err := names.Validate("vm", req.VM); err != nil {
		return err
	}
	if _, err := s.d.Images.Get(ctx, req.Name); err == nil {
		return fmt.Errorf("image %q already exists: remove it first with `banger image rm %s`, or pick another name: %w", req.Name, req.Name, errdefs.ErrConflict)
	}
	v, err := s.d.VMs.Record(ctx, req.VM)
	if err != nil {
		return err
	}
	return promotable(v.Name, v.State)
}

func promotable(name, state string) error {
	if state != api.VMStopped {
		return fmt.Errorf("vm %s is %s: stop it first (banger vm stop %s), so that its disk holds what it synced: %w", name, state, name, errdefs.ErrConflict)
	}
	return nil
}

// Promote makes an image of a stopped VM's root disk: the overlay
// flattened into a new ext4 file, the VM's identity removed, checked and
// published like any image, booting with the VM's kernel. The VM is
// locked meanwhile, so it cannot start.
func (s *Service) Promote(ctx context.Context, req api.ImagePromoteRequest, p operation.Progress) (api.Image, error) {
	if err := s.CheckPromote(ctx, req); err != nil {
		return api.Image{}, err
	}
	v, unlock, err := s.d.VMs.LockedRecord(ctx, req.VM, p)
	if err != nil {
		return api.Image{}, err
	}
	defer unlock()
	if err := promotable(v.Name, v.State); err != nil {
		return api.Image{}, err
	}
	disk, err := vmdisk.Root(s.d.Layout.VM(v.Name))
	if err != nil {
		return api.Image{}, fmt.Errorf("vm %s: %w", v.Name, err)
	}
	source := fmt.Sprintf("vm %s (image %s)", v.Name, v.Image)
	// The image is the caller's, private unless the request shares it.
	ctx = image.WithShared(ctx, req.Shared)
	im, err := s.d.Images.Adopt(ctx, req.Name, v.Kernel, source, func(ctx context.Context, dst string) error {
		return s.rebuild(ctx, v.Name, disk, dst, p)
	}, p)
	if err != nil {
		return api.Image{}, fmt.Errorf("promote vm %s to image %s: %w", v.Name, req.Name, err)
	}
	s.d.Log.Info("promoted vm", "vm", v.Name, "image", im.Name)
	return im, nil
}

// rebuild writes a new image disk at dst from the files of the VM's root
// disk. The disk is the guest's writing: the daemon does not check it,
// repair it or edit it in place (e2fsck and debugfs are parsers of a
// hostile format, as root); a sandboxed reader streams its tree as tar,
// without the VM's identity, every entry is checked on the way, and the
// image is a new file system written from that stream, as a pulled
// image's is. Extended attributes (file capabilities) do not cross.
func (s *Service) rebuild(ctx context.Context, vm string, disk vmm.Disk, dst string, p operation.Progress) error {
	raw := dst + ".guest"
	defer os.Remove(raw)
	p.Stage("flatten", "flattening vm %s's root disk", vm)
	if err := s.d.Driver.Flatten(ctx, disk, raw); err != nil {
		return fmt.Errorf("vm %s's root disk: %w", vm, err)
	}
	fi, err := os.Stat(raw)
	if err != nil {
		return err
	}
	p.Stage("read", "reading vm %s's files in a sandbox, without its identity (host keys, machine ID, random seed)", vm)
	o := ext4read.Options{
		Limits: ext4read.Limits{Entries: s.d.MaxPromoteEntries, Bytes: min(fi.Size(), ext4.MaxDiskSize)},
		Root:   true,
		Skip:   identity,
	}
	pr, pw := io.Pipe()
	read := make(chan error, 1)
	go func() {
		_, err := s.d.GuestDisks.Tar(ctx, raw, o, pw)
		pw.CloseWithError(err)
		read <- err
	}()
	p.Stage("write", "writing the new image's file system")
	_, err = ext4.Builder{Runner: s.d.Runner, MinSize: s.d.DiskBytes}.FromTar(ctx, pr, dst)
	pr.CloseWithError(errors.New("the image writer stopped"))
	if rerr := <-read; rerr != nil {
		return fmt.Errorf("read vm %s's root disk: %w", vm, rerr)
	}
	if err != nil {
		return fmt.Errorf("write the image: %w", err)
	}
	return nil
}
