// Package accel chooses the accelerator VMs run with. A /dev/kvm that
// opens proves nothing: under nested virtualization (cloud VMs, CI
// runners, WSL2) KVM can refuse the MSRs qemu sets, crawl on every first
// touch of guest memory, or die on an emulation failure. So under "auto"
// KVM is proven by a probe guest, run through the same VMM, machine and CPU
// model as VMs, before any VM uses it; anything short of the probe's last
// marker within its deadline means software emulation (TCG).
package accel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Mode is the configured choice (api.AccelMode: config and clients
// name it too).
type Mode = api.AccelMode

// The modes: prove KVM and fall back to TCG; KVM or nothing; TCG always.
const (
	Auto = api.AccelAuto
	KVM  = api.AccelKVM
	TCG  = api.AccelTCG
)

// ParseMode checks a config or flag value.
func ParseMode(s string) (Mode, error) { return api.ParseAccelMode(s) }

// What was found of KVM.
const (
	KVMWorks    = api.KVMWorks
	KVMAbsent   = api.KVMAbsent
	KVMUnusable = api.KVMUnusable
	KVMBroken   = api.KVMBroken
	KVMUnprobed = api.KVMUnprobed
)

// CPU models: the host's under KVM, everything qemu emulates under TCG.
const (
	CPUHost = "host"
	CPUMax  = "max"
)

// Outcome is what one probe run showed.
type Outcome struct {
	OK bool
	// Reason says what went wrong, for people.
	Reason string
	// RefusedMSR is the MSR the VMM failed to set when KVM refused it
	// (qemu aborts on that), or 0.
	RefusedMSR uint32
}

// ProbeFunc runs the probe guest under KVM with a CPU model.
type ProbeFunc func(ctx context.Context, cpu string) Outcome

// Host is how the decision looks at /dev/kvm; tests replace it.
type Host struct {
	Stat   func(string) error
	OpenRW func(string) error
}

// RealHost looks at this machine.
func RealHost() Host {
	return Host{
		Stat: func(p string) error { _, err := os.Stat(p); return err },
		OpenRW: func(p string) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err == nil {
				f.Close()
			}
			return err
		},
	}
}

// Device is the KVM device.
const Device = "/dev/kvm"

// Choice is what VMs get, and what was found on the way.
type Choice struct {
	vmm.Accel
	Mode Mode `json:"mode"`
	// KVM is what was found of KVM (KVMWorks, KVMAbsent, ...).
	KVM string `json:"kvm"`
	// Probes lists each probe run: CPU model and outcome.
	Probes    []api.AccelProbe `json:"probes,omitempty"`
	ProbedAt  time.Time        `json:"probed_at,omitzero"`
	ProbeTook Duration         `json:"probe_took,omitempty"`
	// Cached: the result came from an earlier probe in this host boot,
	// with the same VMM.
	Cached bool `json:"cached,omitempty"`
}

// Duration marshals as a Go duration string ("1.2s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).Round(time.Millisecond).String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// refusable lists the MSRs that nested hosts are known to refuse: their
// names for messages, and the qemu CPU feature that makes qemu set them,
// so that the host model can be retried without it.
var refusable = map[uint32]struct{ name, feature string }{
	0x10a: {"IA32_ARCH_CAPABILITIES", "arch-capabilities"},
	0x48:  {"IA32_SPEC_CTRL", "spec-ctrl"},
	0x122: {"IA32_TSX_CTRL", "tsx-ctrl"},
}

// MSRName names the MSRs above for messages ("" for others).
func MSRName(msr uint32) string { return refusable[msr].name }

// Decide makes the choice for mode. Under KVM and Auto it proves KVM with
// probe: the host CPU model first, then, when the VMM aborted on an MSR a
// nested host refuses, the host model without the feature behind it.
// Under KVM a failure is an error (errdefs.ErrUnavailable) carrying the
// reason; under Auto it means TCG.
func Decide(ctx context.Context, mode Mode, h Host, probe ProbeFunc) (Choice, error) {
	tcg := func(kvm, reason string) Choice {
		return Choice{Accel: vmm.Accel{Name: "tcg", CPU: CPUMax, Reason: reason}, Mode: mode, KVM: kvm}
	}
	if mode == TCG {
		return tcg(KVMUnprobed, "accel = tcg"), nil
	}
	refuse := func(c Choice) (Choice, error) {
		if mode == KVM {
			return c, fmt.Errorf("accel = kvm, but KVM does not work on this host: %s; set accel = \"auto\" (or \"tcg\") in the config, or run the daemon with --accel auto: %w",
				c.Reason, errdefs.ErrUnavailable)
		}
		return c, nil
	}
	if err := h.Stat(Device); err != nil {
		return refuse(tcg(KVMAbsent, "no "+Device))
	}
	if err := h.OpenRW(Device); err != nil {
		reason := Device + " cannot be opened: " + errText(err)
		return refuse(tcg(KVMUnusable, reason))
	}
	began := time.Now()
	var runs []api.AccelProbe
	run := func(cpu string) Outcome {
		o := probe(ctx, cpu)
		runs = append(runs, api.AccelProbe{CPU: cpu, OK: o.OK, Reason: o.Reason})
		return o
	}
	done := func(c Choice) Choice {
		c.Probes, c.ProbedAt, c.ProbeTook = runs, began.UTC(), Duration(time.Since(began))
		return c
	}
	first := run(CPUHost)
	if first.OK {
		return done(Choice{Accel: vmm.Accel{Name: "kvm", CPU: CPUHost}, Mode: mode, KVM: KVMWorks}), nil
	}
	if err := ctx.Err(); err != nil {
		return Choice{}, err
	}
	reason := first.Reason
	if r, ok := refusable[first.RefusedMSR]; ok {
		feat := r.feature
		cpu := CPUHost + ",-" + feat
		second := run(cpu)
		if second.OK {
			c := Choice{Accel: vmm.Accel{Name: "kvm", CPU: cpu,
				Reason: fmt.Sprintf("cpu %s without %s: %s", CPUHost, feat, first.Reason)}, Mode: mode, KVM: KVMWorks}
			return done(c), nil
		}
		if err := ctx.Err(); err != nil {
			return Choice{}, err
		}
		reason += fmt.Sprintf("; with %s off, %s", feat, second.Reason)
	}
	return refuse(done(tcg(KVMBroken, "kvm present but broken: "+reason)))
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
