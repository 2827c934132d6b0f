package qemu

import (
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/vmm"
)

func TestArgs(t *testing.T) {
	base := vmm.Config{
		Name: "vm1", CPUs: 2, MemoryMB: 512, Kernel: "/k/vmlinux", Initrd: "/k/initrd.img",
		Cmdline: "console=ttyS0 root=/dev/vda rw", Console: "/v/console.log", Control: "/v/qmp.sock",
		Disks:   []vmm.Disk{{ID: "root", Path: "/v/root,1.qcow2", Format: "qcow2"}, {ID: "work", Path: "/v/work.ext4", Format: "raw", ReadOnly: true}},
		Network: vmm.Network{Forwards: []vmm.Forward{{HostPort: 2222, GuestPort: 22}, {HostPort: 8080, GuestPort: 80}}},
	}
	wide := base
	wide.Network = vmm.Network{Forwards: []vmm.Forward{{HostIP: "0.0.0.0", HostPort: 9090, GuestPort: 90}, {HostPort: 5353, GuestPort: 53, UDP: true}}}
	tcg := vmm.Accel{Name: "tcg", CPU: "max", Reason: "no /dev/kvm"}
	kvm := vmm.Accel{Name: "kvm", CPU: "host"}
	tests := []struct {
		name  string
		accel vmm.Accel
		opt   Options
		want  string
	}{
		{"tcg", tcg, Options{}, "-name vm1 -machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on -accel tcg -cpu max -smp 2 -m 512M " +
			"-nodefaults -no-user-config -nographic -no-reboot -sandbox on,obsolete=deny,spawn=deny,resourcecontrol=deny " +
			"-chardev file,id=console,path=/v/console.log,append=on -serial chardev:console -qmp unix:/v/qmp.sock,server=on,wait=off " +
			"-kernel /k/vmlinux -append console=ttyS0 root=/dev/vda rw -initrd /k/initrd.img " +
			"-drive id=root,file=/v/root,,1.qcow2,format=qcow2,if=none,cache=writeback,discard=unmap -device virtio-blk-device,drive=root " +
			"-drive id=work,file=/v/work.ext4,format=raw,if=none,cache=writeback,discard=unmap,readonly=on -device virtio-blk-device,drive=work " +
			"-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80 -device virtio-net-device,netdev=net0"},
		// passt: qemu's end of the socket pair passt serves.
		{"passt", tcg, Options{UserNet: NetPasst}, "-netdev stream,id=net0,server=off,addr.type=fd,addr.str=3 -device virtio-net-device,netdev=net0"},
		{"slirp asked for", tcg, Options{UserNet: NetSlirp}, "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80 -device"},
		// Anything unresolved fails closed.
		{"auto unresolved is isolated", tcg, Options{UserNet: NetAuto}, "-netdev user,id=net0,restrict=on,hostfwd"},
		// Under KVM the guest has kvmclock: no PIT or PIC.
		{"kvm", kvm, Options{}, "-machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=off,pic=off -accel kvm -cpu host -smp 2"},
		// The CPU model the probe found working is used as it is.
		{"kvm cpu without a refused feature", vmm.Accel{Name: "kvm", CPU: "host,-arch-capabilities"}, Options{}, "-accel kvm -cpu host,-arch-capabilities -smp"},
		{"tcg default cpu", vmm.Accel{Name: "tcg"}, Options{}, "-accel tcg -cpu max -smp"},
		{"runas", tcg, Options{RunAs: "nobody"}, "-initrd /k/initrd.img -runas nobody -drive"},
		{"runas a uid of its own", tcg, Options{RunAs: "1900000003:1900000003"}, "-runas 1900000003:1900000003 -drive"},
		{"unsafe cache asked for", tcg, Options{DiskCache: "unsafe"}, "format=qcow2,if=none,cache=unsafe,discard=unmap"},
	}
	for _, tt := range tests {
		cfg := base
		cfg.Accel = tt.accel
		got := strings.Join(Args(cfg, tt.opt), " ")
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
	wide.Accel = tcg
	for _, mode := range []string{NetSlirp, NetIsolated} {
		if got := strings.Join(Args(wide, Options{UserNet: mode}), " "); !strings.Contains(got, "hostfwd=tcp:0.0.0.0:9090-:90,hostfwd=udp:127.0.0.1:5353-:53 ") {
			t.Errorf("%s forward on 0.0.0.0 and a UDP one: %s", mode, got)
		}
	}
}

// A template's RAM is a shared file; a clone maps it privately and
// boots no kernel: its state comes over QMP.
func TestArgsMemoryFile(t *testing.T) {
	cfg := vmm.Config{Name: "t", CPUs: 1, MemoryMB: 256, Kernel: "/k/vmlinux", Cmdline: "quiet", Initrd: "/k/i.img", Console: "/c", Control: "/q",
		Memory: &vmm.Memory{Path: "/t/mem,1", Shared: true}}
	template := strings.Join(Args(cfg, Options{}), " ")
	for _, want := range []string{"-machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on,memory-backend=mem ",
		"-m 256M ", "-object memory-backend-file,id=mem,size=256M,mem-path=/t/mem,,1,share=on ", "-kernel /k/vmlinux -append quiet -initrd /k/i.img"} {
		if !strings.Contains(template, want) {
			t.Errorf("template: no %q in %s", want, template)
		}
	}
	if strings.Contains(template, "-incoming") {
		t.Errorf("template waits for a state: %s", template)
	}
	cfg.Memory.Shared, cfg.Restore = false, "/t/state"
	clone := strings.Join(Args(cfg, Options{}), " ")
	if !strings.Contains(clone, "mem-path=/t/mem,,1,share=off ") || !strings.Contains(clone, "-incoming defer") {
		t.Errorf("clone: %s", clone)
	}
	for _, bad := range []string{"-kernel", "-append", "-initrd", "/t/state"} {
		if strings.Contains(clone, bad) {
			t.Errorf("clone has %s: %s", bad, clone)
		}
	}
}

// A tap the driver inherited is the NIC's backend, with the MAC the host
// network gave it; no user-mode forward is made for it.
func TestArgsTap(t *testing.T) {
	cfg := vmm.Config{Name: "b", CPUs: 1, MemoryMB: 128, Kernel: "/k", Console: "/c", Control: "/q",
		Network: vmm.Network{Tap: "bg-abc", MAC: "02:b4:0a:d5:00:02", Forwards: []vmm.Forward{{HostPort: 2222, GuestPort: 22}}}}
	got := strings.Join(Args(cfg, Options{TapFD: 5, UserNet: NetPasst}), " ")
	if want := "-netdev tap,id=net0,fd=5,vhost=off -device virtio-net-device,netdev=net0,mac=02:b4:0a:d5:00:02"; !strings.HasSuffix(got, want) {
		t.Errorf("got %s\nwant the suffix %s", got, want)
	}
	if strings.Contains(got, "hostfwd") || strings.Contains(got, "stream") {
		t.Errorf("a tap VM got a user-mode network: %s", got)
	}
}

// The probe guest gets no network and no command line.
func TestArgsNoNetwork(t *testing.T) {
	got := strings.Join(Args(vmm.Config{Name: "p", CPUs: 1, MemoryMB: 128, Kernel: "/p.elf", Console: "/c", Control: "/q", Network: vmm.Network{None: true}}, Options{}), " ")
	for _, bad := range []string{"-netdev", "-append", "-device"} {
		if strings.Contains(got, bad) {
			t.Errorf("%s in %s", bad, got)
		}
	}
}

func TestPasstArgs(t *testing.T) {
	fw := []vmm.Forward{{HostPort: 2222, GuestPort: 22}, {HostPort: 8080, GuestPort: 80}}
	base := "--fd 3 --foreground --quiet --no-map-gw --ipv4-only --address 10.0.2.15 --netmask 24 --gateway 10.0.2.2 --dns-forward 10.0.2.3"
	for _, tt := range []struct {
		name  string
		fw    []vmm.Forward
		runAs string
		want  string
	}{
		{"forwards on 127.0.0.1 only", fw, "1900000003:1900000003", base + " --runas 1900000003:1900000003 --tcp-ports 127.0.0.1/2222:22 --tcp-ports 127.0.0.1/8080:80 --udp-ports none"},
		{"no forwards", nil, "", base + " --tcp-ports none --udp-ports none"},
		{"a forward on every address", []vmm.Forward{{HostIP: "0.0.0.0", HostPort: 8080, GuestPort: 80}}, "", base + " --tcp-ports 0.0.0.0/8080:80 --udp-ports none"},
		{"UDP", []vmm.Forward{{HostPort: 2222, GuestPort: 22}, {HostPort: 5353, GuestPort: 53, UDP: true}}, "", base + " --tcp-ports 127.0.0.1/2222:22 --udp-ports 127.0.0.1/5353:53"},
	} {
		if got := strings.Join(PasstArgs(vmm.Config{Network: vmm.Network{Forwards: tt.fw}}, tt.runAs), " "); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestGuestParams(t *testing.T) {
	for _, tt := range []struct {
		accel vmm.Accel
		want  string
	}{
		// TCG: the early TSC rate, as calibration against the PIT fails.
		{vmm.Accel{Name: "tcg", CPU: "max"}, "pci=off tsc_early_khz=2000000"},
		// KVM: kvmclock gives the guest its clock.
		{vmm.Accel{Name: "kvm", CPU: "host"}, "pci=off"},
		{vmm.Accel{Name: "kvm", CPU: "host,-arch-capabilities"}, "pci=off"},
	} {
		if got := strings.Join(GuestParams(tt.accel, 0), " "); got != tt.want {
			t.Errorf("%v params = %q, want %q", tt.accel, got, tt.want)
		}
	}
}
