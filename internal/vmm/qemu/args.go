// Package qemu is the qemu driver: machine type microvm, KVM when a probe
// guest proved it works, else software emulation (TCG).
package qemu

import (
	"fmt"
	"strings"

	"github.com/banger-dev/banger/internal/vmm"
)

// Options are the host-side choices that are not part of a VM's config.
type Options struct {
	// RunAs is the user qemu switches to once it has opened its disks,
	// sockets and console: a name, or "UID:GID" ("" keeps the caller's).
	RunAs string
	// DiskCache is qemu's cache mode for disks: "writeback" (the default)
	// honours the guest's flushes, so what a guest synced survives a
	// killed qemu, qcow2 metadata included; "unsafe" ignores them.
	DiskCache string
	// DiskFDs are descriptors qemu inherits for disks, by disk ID: one
	// open read-write, one read-only. qemu reopens a disk it hands over
	// in a migration (saving a template, resuming from one), after it
	// dropped root; from a set of descriptors it needs no path.
	DiskFDs map[string][2]int
	// UserNet is the user-mode network backend (NetAuto and the others);
	// Args takes it resolved, and anything but NetPasst and NetSlirp
	// means NetIsolated, so that a guest's network fails closed.
	UserNet string
	// TapFD is the descriptor of the tap qemu inherits for a VM whose
	// Network names one.
	TapFD int
}

// Args builds qemu-system-x86_64's command line for cfg. It is a pure
// function so that the command line can be checked as text.
func Args(cfg vmm.Config, o Options) []string {
	args := machineArgs(cfg)
	args = append(args, memoryArgs(cfg)...)
	args = append(args, bootArgs(cfg)...)
	if o.RunAs != "" {
		// Everything qemu needs is open by the time it drops root, so a
		// compromised VMM holds no privilege beyond its own files.
		args = append(args, "-runas", o.RunAs)
	}
	args = append(args, diskArgs(cfg.Disks, o)...)
	if cfg.Network.None {
		return args
	}
	return append(args, netdevArgs(cfg.Network, o)...)
}

// machineArgs are the machine, accelerator and CPUs, the sandbox, the
// console and the QMP socket.
func machineArgs(cfg vmm.Config) []string {
	accel, cpu := "tcg", "max"
	// Under TCG the guest has no kvmclock: it calibrates its TSC against
	// the PIT, so the PIT (and its PIC) must be there, or early boot
	// wedges. Under KVM neither is needed.
	timers := "pit=on,pic=on"
	if cfg.Accel.KVM() {
		accel, cpu, timers = "kvm", "host", "pit=off,pic=off"
	}
	if cfg.Accel.CPU != "" {
		cpu = cfg.Accel.CPU
	}
	machine := "microvm,x-option-roms=off,isa-serial=on,rtc=on," + timers
	if cfg.Memory != nil {
		machine += ",memory-backend=mem"
	}
	return []string{
		"-name", cfg.Name,
		// rtc=on keeps the guest's clock source: without it the kernel can
		// hang calibrating its clock under TCG.
		"-machine", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-smp", fmt.Sprint(cfg.CPUs),
		"-m", fmt.Sprintf("%dM", cfg.MemoryMB),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		// seccomp: no fork or exec, no scheduler or resource changes, no
		// obsolete calls. Privilege changes stay allowed only because
		// qemu (7.2) installs the filter before -runas drops root; with
		// nothing left to exec, a dropped qemu cannot gain it back.
		"-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny",
		// Appended, not truncated: the console log keeps every boot.
		"-chardev", "file,id=console,path=" + escape(cfg.Console) + ",append=on",
		"-serial", "chardev:console",
		"-qmp", "unix:" + cfg.Control + ",server=on,wait=off",
	}
}

// memoryArgs are the guest RAM's backend, when cfg names one: anonymous,
// or a file (shared, for a template's memory).
func memoryArgs(cfg vmm.Config) []string {
	m := cfg.Memory
	switch {
	case m == nil:
		return nil
	case m.Path == "":
		return []string{"-object", fmt.Sprintf("memory-backend-ram,id=mem,size=%dM", cfg.MemoryMB)}
	}
	share := "off"
	if m.Shared {
		share = "on"
	}
	return []string{"-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", cfg.MemoryMB, escape(m.Path), share)}
}

// bootArgs boot the kernel, or wait for a saved state to restore.
func bootArgs(cfg vmm.Config) []string {
	if cfg.Restore != "" {
		// No kernel: the guest's memory already holds it, and qemu would
		// write the kernel's pristine image over the running one's (as
		// private copies in every clone). The state comes over QMP.
		return []string{"-incoming", "defer"}
	}
	// An ELF vmlinux boots through its PVH entry: no bzImage
	// decompression, no real-mode setup.
	args := []string{"-kernel", cfg.Kernel}
	if cfg.Cmdline != "" {
		args = append(args, "-append", cfg.Cmdline)
	}
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	return args
}

// diskArgs attach each disk as a virtio-blk device, through the
// descriptor set o gives it, if any.
func diskArgs(disks []vmm.Disk, o Options) []string {
	cache := o.DiskCache
	if cache == "" {
		cache = "writeback"
	}
	var args []string
	for i, d := range disks {
		file := escape(d.Path)
		if fds, ok := o.DiskFDs[d.ID]; ok {
			set := i + 1
			args = append(args, "-add-fd", fmt.Sprintf("fd=%d,set=%d", fds[0], set), "-add-fd", fmt.Sprintf("fd=%d,set=%d", fds[1], set))
			file = fmt.Sprintf("/dev/fdset/%d", set)
		}
		drive := fmt.Sprintf("id=%s,file=%s,format=%s,if=none,cache=%s,discard=unmap", d.ID, file, d.Format, cache)
		if _, ok := o.DiskFDs[d.ID]; ok {
			// qemu's own image locks are taken per open file, and a
			// descriptor set keeps both of a disk's open: handing the disk
			// back after a migration (cont after a snapshot) would find
			// the read-only one's lock in its way. The daemon is what
			// keeps two VMMs off one disk.
			drive += ",file.locking=off"
		}
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", "virtio-blk-device,drive="+d.ID)
	}
	return args
}

// escape doubles commas, qemu's option separator, in a path.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// GuestParams are kernel command line words the guest needs under this
// driver. Under TCG the guest's fast TSC calibration against the PIT fails
// about half the time (measured: 4 boots of 6 wedged after "Marking TSC
// unstable"); giving the TSC frequency skips it (8 of 8 booted). It must
// be the host's (tscKHz; 2 GHz when unknown): the guest's TSC is the
// host's, and its timer is calibrated against it.
//
// microvm has no PCI bus: pci=off spares the guest probing for one.
func GuestParams(a vmm.Accel, tscKHz int) []string {
	if a.KVM() {
		return []string{"pci=off"}
	}
	if tscKHz <= 0 {
		tscKHz = 2000000
	}
	return []string{"pci=off", fmt.Sprintf("tsc_early_khz=%d", tscKHz)}
}
