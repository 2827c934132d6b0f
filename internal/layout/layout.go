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

// Dirs lists the directories the daemon creates at start.
func (l Layout) Dirs() []string {
	return []string{l.Root, l.Staging(), l.Kernels(), l.Images(), l.VMs()}
}

// File names inside an image's directory.
const (
	ImageRootfs = "rootfs.ext4"
)

// Image is the directory of the named, already validated, image.
func (l Layout) Image(name string) string { return filepath.Join(l.Images(), name) }
