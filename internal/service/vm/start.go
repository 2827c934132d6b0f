package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/revert"
	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/service/vm/request"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// A start is a plan: named steps run in order over one launch. Cold boot,
// resume from a template and restore from a snapshot share the steps that
// prepare a start (accelerator, kernel, ports, VMM configuration,
// network) and differ in how the guest comes up. Each step that makes
// something adds its undo to the launch's Reverter, so a start that fails
// at any step leaves nothing behind: no tap, rule, lease or VMM.

// launch is one start in the making: what earlier steps found and made.
type launch struct {
	v       store.VM
	timeout time.Duration
	p       operation.Progress
	acc     vmm.Accel
	k       api.Kernel
	cfg     vmm.Config
	undo    *revert.Reverter
	// up is set by the step that brought the guest to ready; the steps
	// after it (a cold boot after a resume that worked) are skipped.
	up bool
	// modules is the kernel's modules disk ("" for none).
	modules string
	booted  time.Time // when the VMM of a cold boot started
	took    []string  // "step=duration", for the daemon's log
}

type step struct {
	name string
	run  func(context.Context, *launch) error
}

// plan returns the steps that start v, named for the log.
func (s *Service) plan(v store.VM) (string, []step) {
	prepare := []step{
		{"accelerator", s.stepAccel},
		{"kernel", s.stepKernel},
		{"ports", s.stepPorts},
		{"config", s.stepConfig},
		{"network", s.stepNetwork},
	}
	cold := []step{
		{"vmm", s.stepBoot},
		{"ready", s.stepReady},
	}
	switch {
	case v.Snapshot != "" && v.StartedAt.IsZero():
		return "restore", append(prepare, step{"restore", s.stepRestore})
	case s.templatable(v):
		return "template", append(append(prepare, step{"template", s.stepTemplate}), cold...)
	}
	return "cold", append(prepare, cold...)
}

// Start boots a stopped VM and waits for its agent. A running VM is
// returned as it is.
func (s *Service) Start(ctx context.Context, name string, req api.VMStartRequest, p operation.Progress) (api.VM, error) {
	timeout, err := s.timeout(req.ReadyTimeout)
	if err != nil {
		return api.VM{}, err
	}
	v, unlock, err := s.lockedGet(ctx, name, p)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	if v.State != api.VMStopped {
		p.Stage("start", "vm %s is already %s", name, v.State)
		return s.view(v), nil
	}
	release, err := s.quota.Reserve(ctx, v)
	if err != nil {
		return api.VM{}, err
	}
	defer release()
	l := &launch{v: v, timeout: timeout, p: p, undo: revert.New()}
	defer l.undo.Fail()
	kind, steps := s.plan(v)
	began := time.Now()
	for _, st := range steps {
		if l.up {
			break
		}
		began := time.Now()
		if err := st.run(ctx, l); err != nil {
			return api.VM{}, err
		}
		l.took = append(l.took, st.name+"="+time.Since(began).Round(time.Millisecond).String())
	}
	l.undo.Success()
	s.d.Log.Info("start steps", "vm", name, "plan", kind, "steps", strings.Join(l.took, " "))
	how := "booted"
	switch {
	case kind == "restore":
		how = "resumed from snapshot " + l.v.Snapshot
	case l.v.Template != "" && kind == "template":
		how = "resumed from template " + l.v.Template
	}
	if l.v.Init != "" {
		how += ", init " + l.v.Init
	}
	s.lifecycle(ctx, name, "start", "%s, ready after %s", how, time.Since(began).Round(time.Millisecond))
	return s.view(l.v), nil
}

func (s *Service) stepAccel(ctx context.Context, l *launch) (err error) {
	if l.acc, err = s.d.Driver.Accel(ctx); err != nil {
		return fmt.Errorf("start vm %s: %w", l.v.Name, err)
	}
	return nil
}

// stepKernel finds the VM's kernel (local: kernel rm refuses one a VM
// needs, so this is a lookup) and banger's initramfs for it.
func (s *Service) stepKernel(ctx context.Context, l *launch) (err error) {
	if l.k, err = s.d.Kernels.Ensure(ctx, l.v.Kernel, l.p); err != nil {
		return fmt.Errorf("kernel %s of vm %s: %w", l.v.Kernel, l.v.Name, err)
	}
	l.cfg.Kernel = l.k.Dir + "/vmlinux"
	if l.cfg.Initrd, err = s.initrds.For(ctx, l.k, l.p); err != nil {
		return err
	}
	l.modules, err = s.modules.For(ctx, l.k, l.p)
	return err
}

// stepPorts checks the published ports are free and gives a user-mode VM
// a free SSH forward if its own was taken while it was stopped.
func (s *Service) stepPorts(ctx context.Context, l *launch) (err error) {
	for _, f := range l.v.Ports {
		if !request.PortFree(f.Addr(), f.HostPort) {
			return fmt.Errorf("vm %s publishes port %d on %s, which is in use there (by another program or VM) or is not an address of this host: free it, or recreate the VM with another -p: %w", l.v.Name, f.HostPort, f.Addr(), errdefs.ErrConflict)
		}
	}
	if l.v.Network != api.NetBridge && !request.PortFree("127.0.0.1", l.v.SSHPort) {
		l.v.SSHPort, err = request.FreePort()
	}
	return err
}

// stepConfig lays out the VMM's configuration: disks, console, control.
func (s *Service) stepConfig(ctx context.Context, l *launch) error {
	dir := s.d.Layout.VM(l.v.Name)
	disk, err := vmdisk.Root(dir)
	if err != nil {
		return fmt.Errorf("vm %s: %w", l.v.Name, err)
	}
	l.v.ConsoleOffset = 0
	if st, err := os.Stat(s.console(l.v.Name)); err == nil {
		l.v.ConsoleOffset = st.Size()
	}
	kernel, initrd := l.cfg.Kernel, l.cfg.Initrd
	l.cfg = s.vmmConfig(l.v)
	l.cfg.Kernel, l.cfg.Initrd, l.cfg.Accel = kernel, initrd, l.acc
	l.cfg.Disks = []vmm.Disk{disk}
	if l.v.Work != nil {
		// The second virtio disk: /dev/vdb in the guest, mounted at /work
		// by the agent before it says ready.
		l.cfg.Disks = append(l.cfg.Disks, vmm.Disk{ID: "work", Path: workDisk(dir), Format: "raw"})
	}
	if l.modules != "" {
		// Last, so that the root and work disks keep their names; the
		// agent finds it by its label.
		l.cfg.Disks = append(l.cfg.Disks, vmm.Disk{ID: vmdisk.ModulesID, Path: l.modules, Format: "raw", ReadOnly: true})
	}
	return nil
}

// stepNetwork attaches the VM to its network (a tap, rules, a lease in
// bridge mode) and writes the kernel command line that names it.
func (s *Service) stepNetwork(ctx context.Context, l *launch) error {
	network, netParams, undoNet, err := s.net().Connect(ctx, &l.v, l.p)
	if err != nil {
		return err
	}
	l.undo.Add(undoNet)
	l.cfg.Network = network
	keys := l.v.AuthorizedKeys
	if s.d.Key != nil {
		keys = append([]string{sshkey.AuthorizedLine(s.d.Key.PublicKey(), "banger-daemon")}, keys...)
	}
	l.cfg.Cmdline = guestboot.Cmdline(l.v.Name, l.cfg.Initrd != "", keys, append(append(s.d.Driver.GuestParams(l.acc), netParams...), guestboot.InitParams(l.v.Init)...))
	if l.v.Work != nil {
		l.cfg.Cmdline += " " + guestproto.ParamWork + "=/dev/vdb"
	}
	return nil
}

// stepRestore starts a fork for the first time, from its snapshot.
func (s *Service) stepRestore(ctx context.Context, l *launch) error {
	if err := s.resumeSnapshot(ctx, &l.v, l.cfg, l.timeout, l.p); err != nil {
		return err
	}
	l.up = true
	return nil
}

// stepTemplate resumes the VM from the template of its kind. When that
// cannot be done the VM gets a fresh root disk and the cold boot steps
// that follow boot it.
func (s *Service) stepTemplate(ctx context.Context, l *launch) error {
	err := s.startFromTemplate(ctx, &l.v, l.cfg, l.k, l.timeout, l.p)
	if err == nil {
		l.up = true
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	l.p.Stage("template", "%v: booting vm %s instead", err, l.v.Name)
	s.d.Log.Warn("no start from a template", "vm", l.v.Name, "err", err)
	if l.cfg.Disks[0], err = s.pristineRoot(ctx, l.v, l.p); err != nil {
		return fmt.Errorf("vm %s: %w", l.v.Name, err)
	}
	return nil
}

// stepBoot starts the VMM on the cold configuration and records the VM
// as starting.
func (s *Service) stepBoot(ctx context.Context, l *launch) error {
	v := &l.v
	// A template's placeholder disk is no part of a boot.
	os.Remove(filepath.Join(s.d.Layout.VM(v.Name), vmdisk.EmptyWork))
	l.p.Stage("boot", "booting vm %s: %s (%s), kernel %s, %d CPU, %d MiB, network %s", v.Name, s.d.Driver.Name(), l.acc.Name, l.k.Name, v.CPUs, v.MemoryMB, s.net().Line(*v))
	l.booted = time.Now()
	proc, err := s.d.Driver.Start(ctx, l.cfg)
	if err != nil {
		return fmt.Errorf("start vm %s: %w", v.Name, err)
	}
	l.undo.Add(func() { proc.Kill() })
	if err = s.net().Police(ctx, *v, proc.PID); err != nil {
		return err
	}
	v.State, v.PID, v.PIDStart, v.HostKey, v.StartedAt = api.VMStarting, proc.PID, proc.StartTime, "", time.Now().UTC()
	v.Accel = l.acc.String()
	if err := s.d.Store.UpdateVM(ctx, *v); err != nil {
		return err
	}
	l.undo.Add(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		stopped := *v
		stopped.State, stopped.PID, stopped.PIDStart = api.VMStopped, 0, 0
		if err := s.d.Store.UpdateVM(cctx, stopped); err != nil {
			s.d.Log.Error("record a vm that failed to start as stopped", "vm", v.Name, "err", err)
		}
	})
	return nil
}

// stepReady waits for the guest agent's ready line and records the VM as
// running, with the host key the agent printed.
func (s *Service) stepReady(ctx context.Context, l *launch) error {
	v, began := &l.v, l.booted
	l.p.Stage("ready", "waiting for the guest agent (up to %s)", l.timeout)
	key, err := guestboot.WaitReady(ctx, v.Name, l.cfg.Console, v.ConsoleOffset, process(*v), l.timeout, v.Init)
	if err != nil {
		return err
	}
	v.State, v.HostKey = api.VMRunning, key
	if err := s.d.Store.UpdateVM(ctx, *v); err != nil {
		return err
	}
	if err := writeBoot(s.d.Layout.VM(v.Name), l.cfg); err != nil {
		s.d.Log.Warn("record the vm's layout", "vm", v.Name, "err", err)
	}
	l.up = true
	l.p.Stage("ready", "vm %s is ready after %s", v.Name, time.Since(began).Round(time.Millisecond))
	s.d.Log.Info("started vm", "vm", v.Name, "pid", v.PID, "ready_after", time.Since(began))
	return nil
}
