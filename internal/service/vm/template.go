package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/digest"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
)

// templatable says whether v's start may resume from a template: the
// driver can save and restore, and the VM never booted (a VM that did
// has a disk of its own that no template's memory matches).
func (s *Service) templatable(v store.VM) bool {
	f := s.d.Driver.Features()
	// Only the user-mode network's guests: a template's guest has the
	// user-mode address, which every clone shares behind its own VMM.
	user := v.Network == "" || v.Network == api.NetUser
	return s.d.Templates != "" && f.Snapshots && f.Overlays && s.d.Key != nil && v.StartedAt.IsZero() && v.Snapshot == "" && user
}

// templateKey is what the template for v must have been made with.
func (s *Service) templateKey(ctx context.Context, v store.VM, k api.Kernel, cold vmm.Config) (template.Key, error) {
	acc := cold.Accel
	_, modules := vmdisk.Modules(cold.Disks)
	im, err := s.d.Images.Get(ctx, v.Image)
	if err != nil {
		return template.Key{}, err
	}
	agent := ""
	if s.d.Agent != "" {
		if agent, err = s.initrds.AgentDigest(); err != nil {
			return template.Key{}, err
		}
	}
	build, err := s.d.Driver.Version(ctx)
	if err != nil {
		return template.Key{}, err
	}
	return template.Key{
		Image: im.Name, ImageDigest: im.Digest, Kernel: k.Name, KernelDigest: k.Digest, Agent: agent,
		VMM: s.d.Driver.Name() + " " + build, Accel: acc.Name + " " + acc.CPU, Network: s.d.Driver.Network(),
		Params: strings.Join(append(append(s.d.Driver.GuestParams(acc), s.d.Driver.NetParams(vmm.Network{})...), guestboot.InitParams(v.Init)...), " "),
		CPUs:   v.CPUs, MemoryMB: v.MemoryMB, DiskBytes: v.DiskBytes, Modules: modules, Init: v.Init,
	}, nil
}

// startFromTemplate resumes v from the template of its kind, making the
// template first (one boot) when there is none or it is out of date. On
// an error v has not started, and its root disk may be the template's
// overlay: the caller boots it cold after pristineRoot.
func (s *Service) startFromTemplate(ctx context.Context, v *store.VM, cold vmm.Config, k api.Kernel, timeout time.Duration, p operation.Progress) error {
	key, err := s.templateKey(ctx, *v, k, cold)
	if err != nil {
		return err
	}
	t, err := s.maker.Get(ctx, key, cold, timeout, p)
	if err != nil {
		return err
	}
	return s.resume(ctx, v, t, cold, timeout, p)
}

// resume starts v from t: its root disk an overlay over the template's,
// its work disk (or an empty one) where the template's placeholder was,
// and then, before anyone else reaches it, its own identity.
func (s *Service) resume(ctx context.Context, v *store.VM, t template.Template, cold vmm.Config, timeout time.Duration, p operation.Progress) error {
	dir := s.d.Layout.VM(v.Name)
	root, err := s.templateRoot(ctx, dir, t)
	if err != nil {
		return err
	}
	work := vmm.Disk{ID: "work", Path: workDisk(dir), Format: "raw"}
	if v.Work == nil {
		work.Path = filepath.Join(dir, vmdisk.EmptyWork)
		if err := vmdisk.Placeholder(work.Path); err != nil {
			return err
		}
	}
	cfg := cold
	cfg.Disks = []vmm.Disk{root, work}
	if m, ok := vmdisk.Modules(cold.Disks); ok {
		cfg.Disks = append(cfg.Disks, m)
	}
	cfg.Memory = &vmm.Memory{Path: t.Memory()}
	cfg.Restore = t.State()
	v.Template = t.ID
	if err := s.resumeFrom(ctx, v, cfg, "template "+t.ID, t.HostKey, v.Work != nil, timeout, p); err != nil {
		v.Template = ""
		return err
	}
	return nil
}

// resumeFrom starts v from a saved state (what names it), then, before
// anyone else reaches it, gives it its identity, pinning the saved
// guest's host key until it has its own; with mountWork the agent mounts
// its work disk then.
func (s *Service) resumeFrom(ctx context.Context, v *store.VM, cfg vmm.Config, what, savedKey string, mountWork bool, timeout time.Duration, p operation.Progress) error {
	p.Stage("boot", "resuming vm %s from %s: %s (%s), %d CPU, %d MiB, network %s", v.Name, what, s.d.Driver.Name(), cfg.Accel.Name, v.CPUs, v.MemoryMB, s.net().Line(*v))
	began := time.Now()
	proc, err := s.d.Driver.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := s.net().Police(ctx, *v, proc.PID); err != nil {
		proc.Kill()
		return err
	}
	vmmTook := time.Since(began)
	v.State, v.PID, v.PIDStart, v.HostKey, v.StartedAt = api.VMStarting, proc.PID, proc.StartTime, "", time.Now().UTC()
	v.Accel = cfg.Accel.String()
	fail := func(err error) error {
		proc.Kill()
		waitExit(context.WithoutCancel(ctx), proc, 3*time.Second)
		v.State, v.PID, v.PIDStart, v.StartedAt = api.VMStopped, 0, 0, time.Time{}
		s.d.Store.UpdateVM(context.WithoutCancel(ctx), *v)
		return err
	}
	if err := s.d.Store.UpdateVM(ctx, *v); err != nil {
		return fail(err)
	}
	key, err := guestboot.GiveIdentity(ctx, guestboot.Clone{
		Addr: v.SSHAddr(), SavedKey: savedKey, Daemon: s.d.Key, Alive: process(*v).Alive, Hostname: v.Name,
		Console: cfg.Console, Log: cfg.Log,
		Keys:      append([]string{sshkey.AuthorizedLine(s.d.Key.PublicKey(), "banger-daemon")}, v.AuthorizedKeys...),
		MountWork: mountWork,
	}, timeout)
	if err != nil {
		return fail(fmt.Errorf("give vm %s its identity: %w", v.Name, err))
	}
	v.State, v.HostKey = api.VMRunning, key
	if err := s.d.Store.UpdateVM(ctx, *v); err != nil {
		return err
	}
	if err := writeBoot(s.d.Layout.VM(v.Name), cfg); err != nil {
		s.d.Log.Warn("record the vm's layout", "vm", v.Name, "err", err)
	}
	p.Stage("ready", "vm %s is ready after %s (resumed from %s)", v.Name, time.Since(began).Round(time.Millisecond), what)
	s.d.Log.Info("resumed vm", "vm", v.Name, "from", what, "pid", proc.PID, "vmm_took", vmmTook, "ready_after", time.Since(began))
	return nil
}

// templateRoot replaces the VM's root disk by an overlay over t's,
// reached through a link in the VM's directory.
func (s *Service) templateRoot(ctx context.Context, dir string, t template.Template) (vmm.Disk, error) {
	if err := vmdisk.RemoveRoot(dir); err != nil {
		return vmm.Disk{}, err
	}
	base := filepath.Join(dir, vmdisk.TemplateBase)
	if err := os.Link(t.Disk.Path, base); err != nil {
		return vmm.Disk{}, fmt.Errorf("link template %s's disk: %w", t.ID, err)
	}
	return s.d.Driver.Overlay(ctx, base, t.Disk.Format, filepath.Join(dir, vmdisk.RootQcow2))
}

// pristineRoot gives a VM whose resume failed a fresh root disk from its
// image, as create made it, to boot cold.
func (s *Service) pristineRoot(ctx context.Context, v store.VM, p operation.Progress) (vmm.Disk, error) {
	dir := s.d.Layout.VM(v.Name)
	if err := vmdisk.RemoveRoot(dir); err != nil {
		return vmm.Disk{}, err
	}
	im, err := s.d.Images.Get(ctx, v.Image)
	if err != nil {
		return vmm.Disk{}, err
	}
	base, err := s.baseFor(ctx, im, v.DiskBytes, p)
	if err != nil {
		return vmm.Disk{}, err
	}
	return vmdisk.Make(ctx, s.d.Driver, base, dir)
}

// Templates lists the templates, with the VMs resumed from each.
func (s *Service) Templates(ctx context.Context) ([]api.Template, error) {
	out := []api.Template{}
	if s.d.Templates == "" {
		return out, nil
	}
	ts, bad := s.d.Templates.List()
	for _, t := range ts {
		used, err := s.d.Store.VMsUsing(ctx, "template", t.ID)
		if err != nil {
			return nil, err
		}
		if used == nil {
			used = []string{}
		}
		k := t.Key
		at := api.Template{
			ID: t.ID, Image: k.Image, Kernel: k.Kernel, CPUs: k.CPUs, MemoryMB: k.MemoryMB, DiskBytes: k.DiskBytes,
			VMM: k.VMM, Agent: digest.Short(k.Agent), Bytes: t.Bytes(), CreatedAt: t.CreatedAt, BootMillis: t.BootTook.Milliseconds(), UsedBy: used,
		}
		if m := t.Missing(); m != "" {
			at.Problem = "lost its " + m + ": made again at the next start of its kind"
		}
		out = append(out, at)
	}
	for id, err := range bad {
		out = append(out, api.Template{ID: id, UsedBy: []string{}, Problem: err.Error()})
	}
	return out, nil
}

// RemoveTemplate drops a template. VMs resumed from it keep running and
// keep their disks (each links the template's disk); the next start of
// its kind makes a new one.
func (s *Service) RemoveTemplate(ctx context.Context, id string) error {
	if s.d.Templates == "" {
		return fmt.Errorf("templates are off in this daemon's config (templates = false): %w", template.ErrNone)
	}
	unlock, err := s.maker.Lock(ctx, id, func() {})
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.d.Templates.Remove(id); err != nil {
		return err
	}
	s.d.Log.Info("removed template", "template", id)
	return nil
}
