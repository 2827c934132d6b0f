// Package vmm defines what banger needs of a virtual machine monitor. Each
// driver (qemu, firecracker) implements it in its own package; nothing
// outside a driver's package branches on which one it is: callers ask the
// Features instead.
package vmm

import (
	"context"
	"time"
)

// Driver runs VMs with one VMM. Implementations: vmm/qemu (and, later,
// vmm/firecracker). VMM processes are detached from the caller: they keep
// running when the daemon stops, and the daemon finds them again by their
// Process.
type Driver interface {
	// Name names the driver in listings ("qemu").
	Name() string
	Features() Features
	// Accel says which accelerator VMs get on this host and why, proving
	// it first where that is needed; an error means no VM can start here
	// (the configured accelerator does not work).
	Accel(ctx context.Context) (Accel, error)
	// Network says, as one line, which user-mode network guests get
	// and what they reach through it.
	Network() string
	// GuestParams are kernel command line words the guest needs under
	// this driver and accelerator.
	GuestParams(a Accel) []string
	// NetParams are the kernel command line words that configure the
	// guest's side of n when the driver owns it (a user-mode network's
	// fixed addresses); none for a tap, whose addresses are the host
	// network's lease.
	NetParams(n Network) []string
	// Start launches the VMM and returns once it runs the guest, or with
	// an error that carries what the VMM said.
	Start(ctx context.Context, cfg Config) (Process, error)
	// Quit makes the VMM exit at once, without the guest's help. Stopping
	// cleanly is asking the guest (through its agent) first.
	Quit(ctx context.Context, cfg Config) error
	// Version names the VMM's build: a saved state is only restored by
	// the build that saved it.
	Version(ctx context.Context) (string, error)
	// Save pauses a running VM whose memory is a shared Memory file and
	// writes its device state to state, a new file; the guest's memory
	// stays in that file. The VM is left paused: quit it, or keep it.
	// Only drivers whose Features say Snapshots implement it.
	Save(ctx context.Context, cfg Config, state string) error
	// Snapshot writes a running VM's whole state, RAM included, to
	// state, a new file, while the guest runs; for the last pass the
	// guest is paused, its disks flushed and still, and copyDisks is
	// called to copy them; then the guest runs on. It returns how long
	// the guest was paused. A VM started from such a state is a fork.
	Snapshot(ctx context.Context, cfg Config, state string, copyDisks func() error) (time.Duration, error)

	// Disk files, for drivers whose Features say Overlays:
	// Overlay makes a copy-on-write disk at path that reads through to
	// base (a file of format baseFormat).
	Overlay(ctx context.Context, base, baseFormat, path string) (Disk, error)
	// Backing names the file an overlay reads through to, and its
	// format ("" when it has none).
	Backing(ctx context.Context, path string) (file, format string, err error)
	// Rebase makes an overlay read through to backing, a file with the
	// same content as its old one (a link to it).
	Rebase(ctx context.Context, path, backing, format string) error
	// Flatten writes d, and all it reads through to, as one sparse raw
	// file at dst.
	Flatten(ctx context.Context, d Disk, dst string) error
}

// Accel is the accelerator a VM runs with.
type Accel struct {
	// Name is "kvm" or "tcg" (software emulation).
	Name string `json:"name"`
	// CPU is the VMM's CPU model under it ("host", "max").
	CPU string `json:"cpu"`
	// Reason says why this one: empty when KVM works as it is.
	Reason string `json:"reason,omitempty"`
}

// KVM says whether the accelerator is hardware virtualization.
func (a Accel) KVM() bool { return a.Name == "kvm" }

// String is the accelerator as people read it: "kvm", or
// "tcg (kvm present but broken: ...)".
func (a Accel) String() string {
	if a.Reason == "" {
		return a.Name
	}
	return a.Name + " (" + a.Reason + ")"
}

// Features says what a driver can do.
type Features struct {
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

// Forward publishes a guest port on a host address.
type Forward struct {
	// HostIP is the address it listens on; "" is 127.0.0.1.
	HostIP    string
	HostPort  int
	GuestPort int
	// UDP forwards datagrams; otherwise TCP.
	UDP bool
}

// Addr is the host address the forward listens on.
func (f Forward) Addr() string {
	if f.HostIP == "" {
		return "127.0.0.1"
	}
	return f.HostIP
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
	Network  Network
	// Console is the file the serial console is written to.
	Console string
	// Control is the VMM's control socket (QMP, or Firecracker's API).
	Control string
	// Log receives the VMM's own output (its errors).
	Log string
	// Accel is what Driver.Accel chose.
	Accel Accel
	// Memory, when set, is a file that holds the guest's RAM.
	Memory *Memory
	// Restore, when set, is a device state written by Save: the VM
	// resumes from it, its RAM mapped copy-on-write from Memory, instead
	// of booting Kernel. Every disk must be laid out as when it was saved
	// (same IDs, formats and order; a raw disk may have grown, and the
	// guest is told its new size).
	Restore string
}

// Network is how a guest's one NIC is connected: data the VM service
// hands every driver alike, so that no caller builds a VMM's network
// options.
type Network struct {
	// Tap is a host tap device (made by the host network service, on its
	// bridge) the NIC is attached to; MAC is the NIC's address. Without a
	// tap the VMM's own user-mode network carries the guest's traffic.
	Tap string
	MAC string
	// Forwards publish guest ports on host addresses through the
	// user-mode network (the first is the guest agent's SSH).
	Forwards []Forward
	// Isolated: under the user-mode network the guest reaches nothing;
	// only Forwards answer.
	Isolated bool
	// None: no NIC at all.
	None bool
}

// Memory backs a guest's RAM with a file, or names its RAM as such a VM
// does, for a state saved from one.
type Memory struct {
	// Path is the file; "" is anonymous memory under the same name (a
	// fork of a VM that resumed from a template).
	Path string
	// Shared: the guest's writes land in the file (a VM being saved as a
	// template). Otherwise the file is mapped privately: pages the guest
	// writes become its own, the others stay shared with every other VM
	// mapping the same file.
	Shared bool
}
