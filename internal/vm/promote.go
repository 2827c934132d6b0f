package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/errdefs"
	"github.com/banger-dev/banger/internal/names"
	"github.com/banger-dev/banger/internal/operation"
	"github.com/banger-dev/banger/internal/runner"
)

// identityFiles are what makes a guest this VM rather than any VM of its
// image, removed from a promoted disk so that each VM of the new image
// makes its own: the agent's SSH host key (made at first boot), the
// machine ID and the random seed. Authorized keys given to the VM travel
// on its kernel command line and lent credentials live on a tmpfs, so
// neither is on the disk.
var identityFiles = []string{
	"/.banger/ssh_host_ed25519_key",
	"/.banger/ssh_host_ed25519_key.pub",
	"/etc/machine-id",
	"/var/lib/dbus/machine-id",
	"/var/lib/systemd/random-seed",
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
	disk, err := rootDisk(s.d.Layout.VM(v.Name))
	if err != nil {
		return api.Image{}, fmt.Errorf("vm %s: %w", v.Name, err)
	}
	source := fmt.Sprintf("vm %s (image %s)", v.Name, v.Image)
	im, err := s.d.Images.Adopt(ctx, req.Name, v.Kernel, source, func(ctx context.Context, dst string) error {
		p.Stage("flatten", "flattening vm %s's root disk", v.Name)
		if err := s.d.Driver.Flatten(ctx, disk, dst); err != nil {
			return fmt.Errorf("vm %s's root disk: %w", v.Name, err)
		}
		p.Stage("identity", "removing vm %s's identity (host key, machine ID, random seed)", v.Name)
		return removeIdentity(ctx, s.d.Runner, dst)
	}, p)
	if err != nil {
		return api.Image{}, fmt.Errorf("promote vm %s to image %s: %w", v.Name, req.Name, err)
	}
	s.d.Log.Info("promoted vm", "vm", v.Name, "image", im.Name)
	return im, nil
}

// removeIdentity deletes identityFiles from the ext4 file system in disk,
// offline, with debugfs; files that are not there are skipped. SSH
// server host keys (an image with openssh-server) go too.
func removeIdentity(ctx context.Context, r runner.Runner, disk string) error {
	var present []string
	for _, f := range identityFiles {
		if exists(ctx, r, disk, f) {
			present = append(present, f)
		}
	}
	if out, err := r.Run(ctx, runner.Cmd{Name: "debugfs", Args: []string{"-R", "ls -p /etc/ssh", disk}}); err == nil {
		// ls -p: /inode/mode/uid/gid/name/size/
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Split(l, "/"); len(f) > 5 && strings.HasPrefix(f[5], "ssh_host_") {
				present = append(present, "/etc/ssh/"+f[5])
			}
		}
	}
	if len(present) == 0 {
		return nil
	}
	// Beside the disk, in the daemon's own staging directory.
	cmds, err := os.CreateTemp(filepath.Dir(disk), "identity-*.debugfs")
	if err != nil {
		return err
	}
	defer os.Remove(cmds.Name())
	for _, f := range present {
		fmt.Fprintf(cmds, "rm %s\n", f)
	}
	if err := cmds.Close(); err != nil {
		return err
	}
	out, err := r.Run(ctx, runner.Cmd{Name: "debugfs", Args: []string{"-w", "-f", cmds.Name(), disk}})
	if err != nil {
		return fmt.Errorf("remove identity files: %w", err)
	}
	// debugfs exits 0 whatever its commands did: check each is gone.
	var left []string
	for _, f := range present {
		if exists(ctx, r, disk, f) {
			left = append(left, f)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("remove identity files: %s still there: %s", strings.Join(left, ", "), strings.TrimSpace(string(out)))
	}
	return nil
}

// exists says whether path is in the ext4 file system in disk.
func exists(ctx context.Context, r runner.Runner, disk, path string) bool {
	out, err := r.Run(ctx, runner.Cmd{Name: "debugfs", Args: []string{"-R", "stat " + path, disk}})
	return err == nil && strings.Contains(string(out), "Inode:")
}
