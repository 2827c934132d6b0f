package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/image"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

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
	v, err := s.get(ctx, req.VM)
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
	v, unlock, err := s.lockedGet(ctx, req.VM, p)
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
	_, err = ext4.Builder{Runner: s.d.Runner, MinSize: s.d.Defaults.DiskBytes}.FromTar(ctx, pr, dst)
	pr.CloseWithError(errors.New("the image writer stopped"))
	if rerr := <-read; rerr != nil {
		return fmt.Errorf("read vm %s's root disk: %w", vm, rerr)
	}
	if err != nil {
		return fmt.Errorf("write the image: %w", err)
	}
	return nil
}
