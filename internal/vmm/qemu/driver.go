package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/accel"
	"github.com/banger-dev/banger/internal/errdefs"
	"github.com/banger-dev/banger/internal/vmm"
)

// Binary is the qemu program the driver runs.
const Binary = "qemu-system-x86_64"

// Driver runs VMs with qemu's microvm machine.
type Driver struct {
	Options
	// Binary is the qemu program (default qemu-system-x86_64 on PATH).
	Binary string
	// Accelerator makes and holds the accelerator choice.
	Accelerator *accel.Selector
	// runAsErr refuses every start when the VMM cannot drop root.
	runAsErr error
}

var _ vmm.Driver = (*Driver)(nil)

// New returns a driver whose accelerator follows mode; the probe's result
// is cached in cache ("" for none). When the caller is root, qemu drops
// to runAs after start-up; if that user does not exist, no VM starts
// (a VMM silently left as root would be the worst failure).
func New(runAs string, mode accel.Mode, cache string) *Driver {
	var o Options
	var runAsErr error
	if runAs != "" && os.Geteuid() == 0 {
		if _, err := user.Lookup(runAs); err == nil {
			o.RunAs = runAs
		} else {
			runAsErr = fmt.Errorf("vmm_user %q does not exist, and qemu must not keep root: create it (useradd --system --no-create-home --shell /usr/sbin/nologin %s), or name another unprivileged user in the config: %w", runAs, runAs, errdefs.ErrUnavailable)
		}
	}
	d := &Driver{Options: o, Binary: Binary, runAsErr: runAsErr}
	workDir := ""
	if cache != "" {
		// Beside the cache, in the state directory: what a daemon killed
		// mid-probe left there is swept by the next one.
		workDir = filepath.Dir(cache)
		old, _ := filepath.Glob(filepath.Join(workDir, "banger-probe-*"))
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	d.Accelerator = &accel.Selector{
		Mode: mode, Host: accel.RealHost(), Cache: cache,
		Probe: func(ctx context.Context, cpu string) accel.Outcome {
			if workDir != "" {
				os.MkdirAll(workDir, 0o755)
			}
			return Probe(ctx, d.bin(), vmm.Accel{Name: "kvm", CPU: cpu}, ProbeDeadline, workDir)
		},
		VMMVersion: d.Version,
	}
	return d
}

// CannotStart says why no VM can start with this driver, if so: a VMM
// user to drop to that does not exist.
func (d *Driver) CannotStart() error { return d.runAsErr }

func (d *Driver) bin() string {
	if d.Binary == "" {
		return Binary
	}
	return d.Binary
}

// Version is qemu's own version line, which identifies its build.
func (d *Driver) Version(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, d.bin(), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", d.bin(), err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// Name implements vmm.Driver.
func (d *Driver) Name() string { return "qemu" }

// Features implements vmm.Driver.
func (d *Driver) Features() vmm.Features {
	return vmm.Features{UserNetwork: true, Overlays: true}
}

// Accel implements vmm.Driver: the selector's choice, proven once; an
// error when VMMs cannot drop root here.
func (d *Driver) Accel(ctx context.Context) (vmm.Accel, error) {
	if d.runAsErr != nil {
		// Asked before any VM is made: refuse then, not after a pull.
		return vmm.Accel{}, d.runAsErr
	}
	c, err := d.Accelerator.Get(ctx)
	return c.Accel, err
}

// GuestParams implements vmm.Driver.
func (d *Driver) GuestParams(a vmm.Accel) []string { return GuestParams(a) }

// Start launches qemu in its own session, so that it outlives the daemon
// and a Ctrl-C aimed at a foreground daemon does not reach it, and returns
// once qemu answers on QMP: by then it has opened every disk and bound
// every forwarded port, so those errors surface here.
func (d *Driver) Start(ctx context.Context, cfg vmm.Config) (vmm.Process, error) {
	if d.runAsErr != nil {
		return vmm.Process{}, d.runAsErr
	}
	bin := d.bin()
	path, err := exec.LookPath(bin)
	if err != nil {
		return vmm.Process{}, fmt.Errorf("%s is not installed (apt-get install qemu-system-x86): %w", bin, err)
	}
	log, err := os.OpenFile(cfg.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return vmm.Process{}, err
	}
	defer log.Close()
	os.Remove(cfg.Control)
	// Not exec.CommandContext: the VMM must outlive this request.
	cmd := exec.Command(path, Args(cfg, d.Options)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return vmm.Process{}, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	// Reap qemu when it exits while this daemon runs; after a daemon
	// restart it is init's child and init reaps it.
	go func() { exited <- cmd.Wait() }()
	proc, err := vmm.ProcessOf(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		return vmm.Process{}, fmt.Errorf("qemu exited at once: %s", readLog(cfg.Log))
	}
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := QMP(qctx, cfg.Control, "query-status")
		cancel()
		if err == nil {
			return proc, nil
		}
		select {
		case werr := <-exited:
			return vmm.Process{}, fmt.Errorf("qemu exited (%v): %s", werr, readLog(cfg.Log))
		case <-ctx.Done():
			cmd.Process.Kill()
			return vmm.Process{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Quit implements vmm.Driver with QMP's quit.
func (d *Driver) Quit(ctx context.Context, cfg vmm.Config) error {
	_, err := QMP(ctx, cfg.Control, "quit")
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
		return nil // already gone
	}
	return err
}

// readLog returns what qemu printed, trimmed, for an error message.
func readLog(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "(it printed nothing)"
	}
	return s
}
