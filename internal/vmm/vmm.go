// Package vmm defines what banger needs of a virtual machine monitor. Each
// driver (qemu, firecracker) implements it in its own package; nothing
// outside a driver's package branches on which one it is: callers ask the
// Features instead.
package vmm

// Features says what a driver can do.
type Features struct {
	// KVM is true when the driver runs with hardware acceleration.
	KVM bool
	// UserNetwork: the VMM itself forwards 127.0.0.1 ports to the guest
	// (qemu's user networking), so no root or tap is needed.
	UserNetwork bool
	// Snapshots: the driver can snapshot and restore a running VM.
	Snapshots bool
	// Overlays: the driver layers a writable file over a read-only base
	// disk itself (qcow2 backing files).
	Overlays bool
}

// Disk is one virtio block device.
type Disk struct {
	ID       string
	Path     string
	Format   string // "raw" or "qcow2"
	ReadOnly bool
}

// Forward publishes a guest TCP port on 127.0.0.1.
type Forward struct {
	HostPort  int
	GuestPort int
}

// Config is everything needed to start one VM.
type Config struct {
	Name     string
	CPUs     int
	MemoryMB int
	Kernel   string // uncompressed vmlinux
	Initrd   string
	Cmdline  string
	Disks    []Disk
	Forwards []Forward
	// Console is the file the serial console is written to.
	Console string
	// Control is the VMM's control socket (QMP, or Firecracker's API).
	Control string
}
