//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/api"
)

// The probe guest itself, under the real qemu with TCG: it must reach its
// last marker whatever the accelerator, or the probe would condemn a
// working KVM.
func TestProbeGuestUnderTCG(t *testing.T) {
	for i := range 3 {
		began := time.Now()
		o := qemu.Probe(context.Background(), qemu.Binary, vmm.Accel{Name: "tcg", CPU: accel.CPUMax}, 30*time.Second, t.TempDir(), qemu.Options{})
		if !o.OK {
			t.Fatalf("run %d: the probe guest failed under TCG: %s", i, o.Reason)
		}
		t.Logf("run %d: probe guest finished under TCG in %s", i, time.Since(began).Round(time.Millisecond))
	}
}

// Whatever this host's KVM is, the decision comes with a reason and
// within the probe's bounds.
func TestProbeKVMOnThisHost(t *testing.T) {
	began := time.Now()
	d := qemu.New("", qemu.UIDRange{}, accel.Auto, filepath.Join(t.TempDir(), "accel.json"))
	c, err := d.Accelerator.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	t.Logf("this host: %s, cpu %s, kvm %s, probe took %s", c.String(), c.CPU, c.KVM, took.Round(time.Millisecond))
	if c.Name == "tcg" && c.Reason == "" {
		t.Errorf("TCG chosen without a reason: %+v", c)
	}
	if _, err := os.Stat(accel.Device); err == nil && c.KVM != accel.KVMUnusable && len(c.Probes) == 0 {
		t.Errorf("/dev/kvm opens but nothing was probed: %+v", c)
	}
	if took > 2*qemu.ProbeDeadline+2*time.Second {
		t.Errorf("probing took %s", took)
	}
}

// status is the daemon's status.
func (e *env) status() api.Status {
	e.t.Helper()
	var st api.Status
	if err := json.Unmarshal([]byte(e.mustBanger("status", "-o", "json")), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitAccel waits for the daemon's start-up probe.
func (e *env) waitAccel() api.Accel {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := e.status()
		if st.Accel.Summary != "probing" {
			return st.Accel
		}
		if time.Now().After(deadline) {
			e.t.Fatal("the accelerator probe did not end within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartWith restarts the env's daemon with extra config lines.
func (e *env) restartWith(base, extra string) {
	e.t.Helper()
	if err := e.term(); err != nil {
		e.t.Fatalf("daemon exit: %v", err)
	}
	if err := os.WriteFile(e.config, []byte(base+extra), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

// accelModes checks, on a daemon with VMs set up, what each accel mode
// does on this host.
func accelModes(t *testing.T, e *env) {
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	defer e.restartWith(string(base), "")
	auto := e.waitAccel()
	t.Logf("auto: %s (kvm %s, probe %s, cached %v)", auto.Summary, auto.KVM, auto.ProbeTook, auto.Cached)
	if auto.Mode != "auto" || auto.Error != "" || auto.Name == "" {
		t.Fatalf("auto: %+v", auto)
	}
	if doc, _, _ := e.banger("doctor", "--state-dir", e.stateDir); !strings.Contains(doc, "accelerator") || !strings.Contains(doc, auto.Name) {
		t.Errorf("doctor does not name the accelerator %s:\n%s", auto.Name, doc)
	}

	e.restartWith(string(base), "accel = \"kvm\"\n")
	kvm := e.waitAccel()
	if auto.Name == "kvm" {
		if kvm.Error != "" || kvm.Name != "kvm" {
			t.Fatalf("accel = kvm where KVM works: %+v", kvm)
		}
	} else {
		if kvm.Error == "" || !strings.Contains(kvm.Error, auto.Reason) {
			t.Fatalf("accel = kvm where KVM does not work: %+v, want an error with %q", kvm, auto.Reason)
		}
		began := time.Now()
		_, errOut, code := e.banger("vm", "run", "--name", "kvmonly", "--image", "busybox-1", "--", "true")
		if code == 0 || !strings.Contains(errOut, "accel = kvm") || !strings.Contains(errOut, auto.Reason) {
			t.Errorf("vm run under accel = kvm: exit %d, want the probe's reason %q:\n%s", code, auto.Reason, errOut)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("vm run took %s to fail", d)
		}
		if vs := e.vms(); len(vs) != 0 {
			t.Errorf("left behind: %v", vmNames(vs))
		}
		if left := dirEntries(t, filepath.Join(e.stateDir, "vms")); len(left) != 0 {
			t.Errorf("VM directories left behind: %v", left)
		}
	}

	e.restartWith(string(base), "accel = \"tcg\"\n")
	if out, errOut, code := e.banger("vm", "run", "--name", "soft", "--image", "busybox-1", "--", "true"); code != 0 {
		t.Fatalf("vm run under accel = tcg: exit %d\n%s%s", code, out, errOut)
	}
	if v := e.vm("soft"); v.Accel != "tcg (accel = tcg)" {
		t.Errorf("vm soft records accel %q", v.Accel)
	}
	if show := e.mustBanger("vm", "show", "soft"); !strings.Contains(show, "Accel:    tcg (accel = tcg)") {
		t.Errorf("vm show:\n%s", show)
	}
	e.mustBanger("vm", "rm", "-f", "soft")
}

// A daemon killed while it probes leaves no probe guest running (one on a
// broken KVM spins a core for good) and, once restarted, no probe files.
func TestDaemonKilledMidProbe(t *testing.T) {
	if err := accel.RealHost().OpenRW(accel.Device); err != nil {
		// Not a missing piece: a host without /dev/kvm probes nothing, and
		// there is nothing to kill mid-probe. (These machines have one.)
		t.Skipf("no usable %s here: nothing is probed", accel.Device)
	}
	e := newEnv(t, "")
	e.start()
	probing := func() []int { return pidsWith("banger-probe", e.stateDir+"/") }
	deadline := time.Now().Add(5 * time.Second)
	for len(probing()) == 0 {
		if e.status().Accel.Summary != "probing" {
			t.Skip("the probe ended before it could be caught running (a working KVM)")
		}
		if time.Now().After(deadline) {
			t.Fatal("no probe guest seen while the daemon said it was probing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The first probe may be an abort over in milliseconds: catch one
	// that keeps running, as a guest crawling on a broken KVM does.
	time.Sleep(300 * time.Millisecond)
	if len(probing()) == 0 {
		t.Skip("no probe guest kept running (KVM answered quickly)")
	}
	e.kill()
	deadline = time.Now().Add(3 * time.Second)
	for len(probing()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("probe guests outlived their daemon: %v", probing())
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.start()
	e.waitAccel()
	if left, _ := filepath.Glob(filepath.Join(e.stateDir, "cache", "banger-probe-*")); len(left) != 0 {
		t.Errorf("probe files left: %v", left)
	}
}
