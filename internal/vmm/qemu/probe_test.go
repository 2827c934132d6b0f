package qemu

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// What qemu printed on the hosts of issue 8, and what the probe makes of it.
func TestExitOutcome(t *testing.T) {
	abort := "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n" +
		"qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n"
	internal := "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nemulation failure\nRAX=0000000000000000\n"
	for _, tt := range []struct {
		name, stderr, stage, want string
		msr                       uint32
	}{
		{"MSR abort", abort, "", "qemu aborted setting MSR 0x10a (IA32_ARCH_CAPABILITIES)", 0x10a},
		{"unknown MSR", "qemu-system-x86_64: error: failed to set MSR 0x4b564d02 to 0x1\n", "", "qemu aborted setting MSR 0x4b564d02", 0x4b564d02},
		{"internal error", internal, "long mode", "KVM internal error (suberror 1), emulation failure during touching 48 MiB of fresh guest memory", 0},
		{"other", "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: Permission denied\n", "", "qemu exited (exit status 1) before the probe guest finished starting the guest (nothing on its console): -accel kvm: Could not access KVM kernel module: Permission denied", 0},
	} {
		o := exitOutcome(errors.New("exit status 1"), tt.stderr, tt.stage)
		if o.OK || !strings.HasPrefix(o.Reason, tt.want) || o.RefusedMSR != tt.msr {
			t.Errorf("%s: %+v, want reason %q and MSR %#x", tt.name, o, tt.want, tt.msr)
		}
	}
}

// A root daemon whose vmm_user does not exist starts no VM, rather than
// leaving qemu as root; it says so before anything is made.
func TestMissingVMMUserRefusesToStart(t *testing.T) {
	testkit.NeedRoot(t, "qemu drops privilege only under a root daemon: the test")
	d := New("banger-no-such-user", UIDRange{From: 1900000000, Count: 16}, accel.TCG, "")
	if _, err := d.Accel(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `vmm_user "banger-no-such-user" does not exist`) {
		t.Fatalf("Accel: %v", err)
	}
	if _, err := d.Start(context.Background(), vmm.Config{Name: "x"}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Start: %v", err)
	}
	if d := New("nobody", UIDRange{}, accel.TCG, ""); d.CannotStart() != nil || d.RunAs != "nobody" {
		t.Fatalf("nobody: %v, runs as %q", d.CannotStart(), d.RunAs)
	}
	if d := New("root", UIDRange{}, accel.TCG, ""); !errors.Is(d.CannotStart(), errdefs.ErrInvalid) {
		t.Fatalf("root as the VMM user: %v", d.CannotStart())
	}
}

// Per-VM uids: the lowest free one, never one a process runs as or one
// handed to a VMM still starting; given back when released.
func TestAllocUID(t *testing.T) {
	// A range whose first uid this test's own process runs as.
	me := os.Getuid()
	d := New(PerVMUser, UIDRange{From: me, Count: 3}, accel.TCG, "")
	d.perVM = true // as a root daemon would have it
	a, releaseA, err := d.allocUID()
	if err != nil || a != me+1 {
		t.Fatalf("first: %d, %v; want %d (%d is in use by this process)", a, err, me+1, me)
	}
	b, releaseB, err := d.allocUID()
	if err != nil || b != me+2 {
		t.Fatalf("second: %d, %v; want %d", b, err, me+2)
	}
	if _, _, err := d.allocUID(); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "vmm_uid_count") {
		t.Fatalf("range used up: %v", err)
	}
	releaseA()
	if c, _, err := d.allocUID(); err != nil || c != a {
		t.Fatalf("after release: %d, %v; want %d again", c, err, a)
	}
	releaseB()
}
