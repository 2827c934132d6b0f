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
		Disks:    []vmm.Disk{{ID: "root", Path: "/v/root,1.qcow2", Format: "qcow2"}, {ID: "work", Path: "/v/work.ext4", Format: "raw", ReadOnly: true}},
		Forwards: []vmm.Forward{{HostPort: 2222, GuestPort: 22}, {HostPort: 8080, GuestPort: 80}},
	}
	tests := []struct {
		name string
		opt  Options
		want string
	}{
		{"tcg", Options{}, "-name vm1 -machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on -accel tcg -cpu max -smp 2 -m 512M " +
			"-nodefaults -no-user-config -nographic -no-reboot -sandbox on -kernel /k/vmlinux -append console=ttyS0 root=/dev/vda rw " +
			"-chardev file,id=console,path=/v/console.log,append=on -serial chardev:console -qmp unix:/v/qmp.sock,server=on,wait=off -initrd /k/initrd.img " +
			"-drive id=root,file=/v/root,,1.qcow2,format=qcow2,if=none,cache=unsafe,discard=unmap -device virtio-blk-device,drive=root " +
			"-drive id=work,file=/v/work.ext4,format=raw,if=none,cache=unsafe,discard=unmap,readonly=on -device virtio-blk-device,drive=work " +
			"-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80 -device virtio-net-device,netdev=net0"},
		{"kvm", Options{KVM: true}, "rtc=on,pit=off,pic=off -accel kvm -cpu host"},
		{"runas", Options{RunAs: "nobody"}, "-initrd /k/initrd.img -runas nobody -drive"},
	}
	for _, tt := range tests {
		got := strings.Join(Args(base, tt.opt), " ")
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestGuestParams(t *testing.T) {
	if got := strings.Join(GuestParams(Options{}), " "); got != "pci=off tsc_early_khz=2000000" {
		t.Errorf("TCG params = %v", got)
	}
	if got := strings.Join(GuestParams(Options{KVM: true}), " "); got != "pci=off" {
		t.Errorf("KVM params = %v", got)
	}
}
