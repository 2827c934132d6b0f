package accel

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func host(stat, open error) Host {
	return Host{
		Stat:   func(string) error { return stat },
		OpenRW: func(string) error { return open },
	}
}

// probes answers by CPU model and records what was asked.
type probes struct {
	by    map[string]Outcome
	asked []string
}

func (p *probes) probe(_ context.Context, cpu string) Outcome {
	p.asked = append(p.asked, cpu)
	if o, ok := p.by[cpu]; ok {
		return o
	}
	return Outcome{Reason: "unexpected cpu " + cpu}
}

var (
	abortMSR  = Outcome{Reason: "qemu aborted setting MSR 0x10a (IA32_ARCH_CAPABILITIES)", RefusedMSR: 0x10a}
	internal  = Outcome{Reason: "KVM internal error (suberror 1), emulation failure during a locked 16-byte compare-exchange (cmpxchg16b)"}
	timeout   = Outcome{Reason: "the probe guest did not finish touching 48 MiB of fresh guest memory within 2s"}
	ok        = Outcome{OK: true}
	permError = &fs.PathError{Op: "open", Path: Device, Err: fs.ErrPermission}
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name      string
		mode      Mode
		host      Host
		probe     map[string]Outcome
		accel     string
		cpu       string
		kvm       string
		reason    string // substring of the choice's reason
		asked     []string
		wantError bool
	}{
		{name: "tcg never touches kvm", mode: TCG, host: host(nil, nil), accel: "tcg", cpu: "max", kvm: KVMUnprobed, reason: "accel = tcg"},
		{name: "no device", mode: Auto, host: host(fs.ErrNotExist, nil), accel: "tcg", cpu: "max", kvm: KVMAbsent, reason: "no /dev/kvm"},
		{name: "device refused", mode: Auto, host: host(nil, permError), accel: "tcg", cpu: "max", kvm: KVMUnusable, reason: "/dev/kvm cannot be opened: permission denied"},
		{name: "works", mode: Auto, host: host(nil, nil), probe: map[string]Outcome{"host": ok}, accel: "kvm", cpu: "host", kvm: KVMWorks, asked: []string{"host"}},
		{name: "qemu abort, retried without the feature, which works", mode: Auto, host: host(nil, nil),
			probe: map[string]Outcome{"host": abortMSR, "host,-arch-capabilities": ok},
			accel: "kvm", cpu: "host,-arch-capabilities", kvm: KVMWorks, reason: "without arch-capabilities: qemu aborted setting MSR 0x10a",
			asked: []string{"host", "host,-arch-capabilities"}},
		{name: "qemu abort, then the guest crawls", mode: Auto, host: host(nil, nil),
			probe: map[string]Outcome{"host": abortMSR, "host,-arch-capabilities": timeout},
			accel: "tcg", cpu: "max", kvm: KVMBroken,
			reason: "kvm present but broken: qemu aborted setting MSR 0x10a (IA32_ARCH_CAPABILITIES); with arch-capabilities off, the probe guest did not finish touching 48 MiB",
			asked:  []string{"host", "host,-arch-capabilities"}},
		{name: "guest internal error", mode: Auto, host: host(nil, nil), probe: map[string]Outcome{"host": internal},
			accel: "tcg", cpu: "max", kvm: KVMBroken, reason: "kvm present but broken: KVM internal error", asked: []string{"host"}},
		{name: "timeout", mode: Auto, host: host(nil, nil), probe: map[string]Outcome{"host": timeout},
			accel: "tcg", cpu: "max", kvm: KVMBroken, reason: "within 2s", asked: []string{"host"}},
		{name: "an abort on an MSR with no known feature is not retried", mode: Auto, host: host(nil, nil),
			probe: map[string]Outcome{"host": {Reason: "qemu aborted setting MSR 0x999", RefusedMSR: 0x999}},
			accel: "tcg", cpu: "max", kvm: KVMBroken, reason: "MSR 0x999", asked: []string{"host"}},
		{name: "kvm mode, works", mode: KVM, host: host(nil, nil), probe: map[string]Outcome{"host": ok}, accel: "kvm", cpu: "host", kvm: KVMWorks, asked: []string{"host"}},
		{name: "kvm mode, broken", mode: KVM, host: host(nil, nil), probe: map[string]Outcome{"host": abortMSR, "host,-arch-capabilities": timeout},
			accel: "tcg", kvm: KVMBroken, cpu: "max", reason: "broken", asked: []string{"host", "host,-arch-capabilities"}, wantError: true},
		{name: "kvm mode, no device", mode: KVM, host: host(fs.ErrNotExist, nil), accel: "tcg", cpu: "max", kvm: KVMAbsent, reason: "no /dev/kvm", wantError: true},
		{name: "kvm mode, device refused", mode: KVM, host: host(nil, permError), accel: "tcg", cpu: "max", kvm: KVMUnusable, reason: "permission denied", wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &probes{by: tt.probe}
			c, err := Decide(context.Background(), tt.mode, tt.host, p.probe)
			if tt.wantError {
				if !errors.Is(err, errdefs.ErrUnavailable) {
					t.Fatalf("error %v, want unavailable", err)
				}
				if !strings.Contains(err.Error(), "accel = kvm") || !strings.Contains(err.Error(), strings.TrimPrefix(tt.reason, "kvm ")) {
					t.Errorf("error %q does not give the reason %q", err, tt.reason)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if c.Name != tt.accel || c.CPU != tt.cpu || c.KVM != tt.kvm {
				t.Errorf("got %s cpu %s kvm %s, want %s cpu %s kvm %s", c.Name, c.CPU, c.KVM, tt.accel, tt.cpu, tt.kvm)
			}
			if !strings.Contains(c.Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", c.Reason, tt.reason)
			}
			if strings.Join(p.asked, " ") != strings.Join(tt.asked, " ") {
				t.Errorf("probed %v, want %v", p.asked, tt.asked)
			}
			if len(tt.asked) > 0 && (len(c.Probes) != len(tt.asked) || c.ProbedAt.IsZero()) {
				t.Errorf("probe runs not recorded: %+v", c)
			}
		})
	}
}

func TestChoiceString(t *testing.T) {
	c, _ := Decide(context.Background(), Auto, host(nil, nil), (&probes{by: map[string]Outcome{"host": abortMSR, "host,-arch-capabilities": timeout}}).probe)
	if got := c.String(); !strings.HasPrefix(got, "tcg (kvm present but broken: qemu aborted setting MSR 0x10a") {
		t.Errorf("String() = %q", got)
	}
	c, _ = Decide(context.Background(), Auto, host(fs.ErrNotExist, nil), nil)
	if got := c.String(); got != "tcg (no /dev/kvm)" {
		t.Errorf("String() = %q", got)
	}
	c, _ = Decide(context.Background(), Auto, host(nil, nil), (&probes{by: map[string]Outcome{"host": ok}}).probe)
	if got := c.String(); got != "kvm" {
		t.Errorf("String() = %q", got)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Auto, "auto": Auto, "kvm": KVM, "tcg": TCG} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	if _, err := ParseMode("hvf"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ParseMode(hvf) = %v", err)
	}
}

// A daemon restart in the same host boot, with the same VMM, takes the
// cached verdict without probing; another VMM version probes again; the
// mode still decides what the verdict means; Reprobe ignores the cache.
func TestSelectorCache(t *testing.T) {
	// The cache is kept for one host boot, by the kernel's boot id.
	_, err := os.Stat("/proc/sys/kernel/random/boot_id")
	testkit.Need(t, err == nil, "no /proc/sys/kernel/random/boot_id here (every Linux has it, with /proc mounted)")
	cache := filepath.Join(t.TempDir(), "accel.json")
	p := &probes{by: map[string]Outcome{"host": abortMSR, "host,-arch-capabilities": timeout}}
	version := "QEMU emulator version 7.2.22"
	sel := func(mode Mode) *Selector {
		return &Selector{Mode: mode, Host: host(nil, nil), Probe: p.probe, Cache: cache,
			VMMVersion: func(context.Context) (string, error) { return version, nil }}
	}
	ctx := context.Background()
	c, err := sel(Auto).Get(ctx)
	if err != nil || c.Name != "tcg" || c.Cached || len(p.asked) != 2 {
		t.Fatalf("first: %+v %v, probed %v", c, err, p.asked)
	}
	c, err = sel(Auto).Get(ctx)
	if err != nil || c.Name != "tcg" || !c.Cached || len(p.asked) != 2 || c.KVM != KVMBroken || !strings.Contains(c.Reason, "MSR 0x10a") {
		t.Fatalf("restart: %+v %v, probed %v", c, err, p.asked)
	}
	if _, err := sel(KVM).Get(ctx); !errors.Is(err, errdefs.ErrUnavailable) || len(p.asked) != 2 {
		t.Fatalf("kvm mode from the cache: %v, probed %v", err, p.asked)
	}
	s := sel(Auto)
	s.Get(ctx)
	p.by["host"] = ok
	if c, err := s.Reprobe(ctx); err != nil || c.Name != "kvm" || c.Cached || len(p.asked) != 3 {
		t.Fatalf("reprobe: %+v %v, probed %v", c, err, p.asked)
	}
	if c, _ := s.Get(ctx); c.Name != "kvm" {
		t.Fatalf("reprobe did not become the choice: %+v", c)
	}
	version = "QEMU emulator version 8.2.0"
	if c, _ := sel(Auto).Get(ctx); c.Cached || len(p.asked) != 4 {
		t.Fatalf("new qemu: %+v, probed %v", c, p.asked)
	}
}
