// Package layout names every file and directory under banger's state
// directory, in one place.
package layout

import "path/filepath"

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

// Dirs lists the directories the daemon creates at start.
func (l Layout) Dirs() []string {
	return []string{l.Root, l.Staging(), l.Kernels(), l.Images(), l.VMs(), l.Run(), l.Cache(), filepath.Dir(l.SSHKey())}
}

// File names inside an image's directory.
const (
	ImageRootfs = "rootfs.ext4"
)

// Image is the directory of the named, already validated, image.
func (l Layout) Image(name string) string { return filepath.Join(l.Images(), name) }
