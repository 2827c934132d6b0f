// Package layout names every file and directory under banger's state
// directory, in one place.
package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names inside a kernel's directory.
const (
	KernelVMLinux = "vmlinux"    // uncompressed ELF kernel
	KernelVMLinuz = "vmlinuz"    // the bzImage it came from, when it came as one
	KernelInitrd  = "initrd.img" // an imported initrd
	KernelModules = "modules"    // modules/<release>/... as under /lib/modules
)

// Layout is a state directory.
type Layout struct {
	Root string
}

// DB is the SQLite database.
func (l Layout) DB() string { return filepath.Join(l.Root, "banger.db") }

// Lock is the file the daemon holds an exclusive lock on while it runs.
func (l Layout) Lock() string { return filepath.Join(l.Root, "daemon.lock") }

// Staging holds work in progress; it is emptied at every start.
func (l Layout) Staging() string { return filepath.Join(l.Root, "staging") }

// Kernels holds one directory per published kernel.
func (l Layout) Kernels() string { return filepath.Join(l.Root, "kernels") }

// Kernel is the directory of the named, already validated, kernel.
func (l Layout) Kernel(name string) string { return filepath.Join(l.Kernels(), name) }

// Images holds one directory per published image.
func (l Layout) Images() string { return filepath.Join(l.Root, "images") }

// VMs holds one directory per VM.
func (l Layout) VMs() string { return filepath.Join(l.Root, "vms") }

// VM is the directory of the named, already validated, VM.
func (l Layout) VM(name string) string { return filepath.Join(l.VMs(), name) }

// Run holds the VMs' control sockets, named by VM ID: a unix socket path
// must stay under 108 bytes whatever the VM's name.
func (l Layout) Run() string { return filepath.Join(l.Root, "run") }

// Cache holds what can be rebuilt at any time (banger's initramfs per
// kernel and agent).
func (l Layout) Cache() string { return filepath.Join(l.Root, "cache") }

// SSHKey is the daemon's own SSH key, which every VM accepts: the daemon
// uses it to ask guests to power off.
func (l Layout) SSHKey() string { return filepath.Join(l.Root, "ssh", "id_ed25519") }

// Templates holds saved VMs that new VMs start from instead of booting.
func (l Layout) Templates() string { return filepath.Join(l.Root, "templates") }

// Snapshots holds running VMs saved whole, which new VMs fork from.
func (l Layout) Snapshots() string { return filepath.Join(l.Root, "snapshots") }

// Dirs lists the directories the daemon creates at start.
func (l Layout) Dirs() []string {
	return []string{l.Root, l.Staging(), l.Kernels(), l.Images(), l.VMs(), l.Run(), l.Cache(), l.Templates(), l.Snapshots(), filepath.Dir(l.SSHKey())}
}

// File names inside an image's directory.
const (
	ImageRootfs = "rootfs.ext4"
)

// Image is the directory of the named, already validated, image.
func (l Layout) Image(name string) string { return filepath.Join(l.Images(), name) }

// MakePrivate takes every group and other permission off root and what
// is below it: state written by a banger that left it readable (files
// 0644 under directories 0755) becomes the daemon's alone. Links are
// left as they are; what they point to is not the state's.
func MakePrivate(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil // gone meanwhile
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if m := info.Mode(); m.Perm()&0o077 != 0 {
			if err := os.Chmod(p, m.Perm()&^0o077|m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return fmt.Errorf("chmod %s: %w", p, err)
			}
		}
		return nil
	})
}
