package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/vmm/qemu/probeguest"
)

// ProbeDeadline bounds one probe run. Measured here: qemu's start and the
// whole probe take about 0.3 s under TCG and far less under a working
// KVM; a nested KVM that crawls needs minutes for the same memory.
const ProbeDeadline = 2 * time.Second

// ProbeMemoryMB is the probe guest's RAM: room for the 48 MiB it touches
// from 16 MiB up.
const ProbeMemoryMB = 128

// Probe runs the probe guest under a, through the same machine options
// as VMs (Args), and says whether it reached its last marker within
// deadline, and if not, what happened. Its files go in a directory made
// under workDir ("" for the system's temporary directory).
func Probe(ctx context.Context, bin string, a vmm.Accel, deadline time.Duration, workDir string, o Options) accel.Outcome {
	dir, err := os.MkdirTemp(workDir, "banger-probe-")
	if err != nil {
		return accel.Outcome{Reason: "probe: " + err.Error()}
	}
	defer os.RemoveAll(dir)
	cfg := vmm.Config{
		Name: "banger-probe", CPUs: 1, MemoryMB: ProbeMemoryMB,
		Kernel:  filepath.Join(dir, "probe.elf"),
		Console: filepath.Join(dir, "console.log"), Control: filepath.Join(dir, "qmp.sock"),
		Accel: a, Network: vmm.Network{None: true},
	}
	if err := os.WriteFile(cfg.Kernel, probeguest.ELF, 0o600); err != nil {
		return accel.Outcome{Reason: "probe: " + err.Error()}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, Args(cfg, o)...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// A daemon killed mid-probe must not leave a guest crawling on a
	// broken KVM behind it, at 100% of a core.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return accel.Outcome{Reason: fmt.Sprintf("start %s: %v", bin, err)}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() {
		cmd.Process.Kill()
		<-exited
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	stage := func() string {
		b, _ := os.ReadFile(cfg.Console)
		return probeguest.Stage(string(b))
	}
	for {
		select {
		case <-tick.C:
			if stage() == probeguest.StageOK {
				kill()
				return accel.Outcome{OK: true}
			}
			// qemu reports a KVM internal error and pauses the guest
			// rather than exiting.
			if strings.Contains(stderr.String(), "KVM internal error") {
				kill()
				return accel.Outcome{Reason: internalError(stderr.String(), stage())}
			}
		case werr := <-exited:
			if s := stage(); s == probeguest.StageOK {
				return accel.Outcome{OK: true}
			}
			return exitOutcome(werr, stderr.String(), stage())
		case <-timer.C:
			kill()
			if strings.Contains(stderr.String(), "KVM internal error") {
				return accel.Outcome{Reason: internalError(stderr.String(), stage())}
			}
			return accel.Outcome{Reason: fmt.Sprintf("the probe guest did not finish %s within %s", probeguest.Next(stage()), deadline)}
		case <-ctx.Done():
			kill()
			return accel.Outcome{Reason: "probe canceled: " + ctx.Err().Error()}
		}
	}
}

var msrRe = regexp.MustCompile(`failed to set MSR (0x[0-9a-fA-F]+)`)

// exitOutcome explains a qemu that exited before the probe finished.
func exitOutcome(werr error, stderr, stage string) accel.Outcome {
	if m := msrRe.FindStringSubmatch(stderr); m != nil {
		msr, _ := strconv.ParseUint(m[1][2:], 16, 32)
		reason := "qemu aborted setting MSR " + m[1]
		if n := accel.MSRName(uint32(msr)); n != "" {
			reason += " (" + n + ")"
		}
		return accel.Outcome{Reason: reason, RefusedMSR: uint32(msr)}
	}
	if strings.Contains(stderr, "KVM internal error") {
		return accel.Outcome{Reason: internalError(stderr, stage)}
	}
	status := "exited"
	if werr != nil {
		status = "exited (" + werr.Error() + ")"
	}
	return accel.Outcome{Reason: fmt.Sprintf("qemu %s before the probe guest finished %s: %s", status, probeguest.Next(stage), firstLine(stderr))}
}

func internalError(stderr, stage string) string {
	what := "KVM internal error"
	if m := regexp.MustCompile(`Suberror: (\d+)`).FindStringSubmatch(stderr); m != nil {
		what += " (suberror " + m[1] + ")"
	}
	if strings.Contains(stderr, "emulation failure") {
		what += ", emulation failure"
	}
	return what + " during " + probeguest.Next(stage)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return strings.TrimPrefix(l, "qemu-system-x86_64: ")
		}
	}
	return "(it printed nothing)"
}
