package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/service/vm/lent"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// bootFile records, in a VM's directory, how its running VMM was laid
// out: a snapshot must be resumed into the same layout.
const bootFile = "boot.json"

// boot is what bootFile holds.
type boot struct {
	// RAM is "mem" when the guest's RAM is a memory backend of that name
	// (a VM resumed from a template, or a fork of one), "" for qemu's own.
	RAM   string     `json:"ram"`
	Disks []vmm.Disk `json:"disks"`
}

func writeBoot(dir string, cfg vmm.Config) error {
	b := boot{Disks: cfg.Disks}
	if cfg.Memory != nil {
		b.RAM = "mem"
	}
	data, _ := json.Marshal(b)
	return os.WriteFile(filepath.Join(dir, bootFile), data, 0o600)
}

func (b boot) memory() *vmm.Memory {
	if b.RAM == "mem" {
		return &vmm.Memory{}
	}
	return nil
}

// snapshotsDir is where snapshots live.
func (s *Service) snapshotsDir() template.Dir { return template.Dir(s.d.Layout.Snapshots()) }

// getSnapshot reads a snapshot of ctx's caller, with an error in a
// snapshot's words: another user's is one that does not exist.
func (s *Service) getSnapshot(ctx context.Context, name string) (template.Template, error) {
	if err := names.Validate("snapshot", name); err != nil {
		return template.Template{}, err
	}
	t, err := s.snapshotsDir().Get(name)
	if err == nil && !peer.Owns(ctx, t.Owner) {
		t, err = template.Template{}, template.ErrNone
	}
	if errors.Is(err, template.ErrNone) {
		return t, fmt.Errorf("snapshot %q does not exist: see `banger vm snapshot ls`: %w", name, errdefs.ErrNotFound)
	}
	if err == nil && t.Source == "" {
		err = fmt.Errorf("snapshot %s: its record names no VM: %w", name, errdefs.ErrInvalid)
	}
	return t, err
}

// CheckSnapshot answers quickly whether Snapshot can start.
func (s *Service) CheckSnapshot(ctx context.Context, vmName string, req api.SnapshotRequest) error {
	v, err := s.get(ctx, vmName)
	if err != nil {
		return err
	}
	if v.Network == api.NetBridge {
		// Its fork would wake with the same address and MAC on the bridge.
		return fmt.Errorf("vm %s is in bridge mode, whose guests cannot be snapshot or forked yet: %w", v.Name, errdefs.ErrInvalid)
	}
	if !s.d.Driver.Features().Snapshots {
		return fmt.Errorf("the %s driver takes no snapshots: %w", s.d.Driver.Name(), errdefs.ErrInvalid)
	}
	if v.State != api.VMRunning {
		return fmt.Errorf("vm %s is %s: a snapshot saves a running VM (start it with `banger vm start %s`): %w", v.Name, v.State, v.Name, errdefs.ErrConflict)
	}
	if lent := lent.Names(s.d.Layout.VM(v.Name), v); len(lent) > 0 && !req.WithLent {
		// Lent credentials live on a tmpfs in the guest, and so in its
		// memory: a snapshot would write them to the host's disk.
		return fmt.Errorf("vm %s holds lent credentials (%s): its snapshot's memory file would hold them too; say --with-lent to take it anyway, or restart the VM to drop them: %w", v.Name, strings.Join(lent, ", "), errdefs.ErrConflict)
	}
	if req.Name != "" {
		if err := names.Validate("snapshot", req.Name); err != nil {
			return err
		}
		if t, err := s.snapshotsDir().Get(req.Name); err == nil {
			if !peer.Owns(ctx, t.Owner) {
				return fmt.Errorf("snapshot name %q is not available: pick another name: %w", req.Name, errdefs.ErrConflict)
			}
			return fmt.Errorf("snapshot %q already exists: remove it with `banger vm snapshot rm %s`, or pick another name: %w", req.Name, req.Name, errdefs.ErrConflict)
		}
	}
	return nil
}

// Snapshot saves a running VM whole: its RAM, disks and device state,
// copied while it is paused. It runs on afterwards, unchanged.
func (s *Service) Snapshot(ctx context.Context, vmName string, req api.SnapshotRequest, p operation.Progress) (api.Snapshot, error) {
	if err := s.CheckSnapshot(ctx, vmName, req); err != nil {
		return api.Snapshot{}, err
	}
	v, unlock, err := s.lockedGet(ctx, vmName, p)
	if err != nil {
		return api.Snapshot{}, err
	}
	defer unlock()
	t, err := s.snapshot(ctx, v, req.Name, p)
	if err != nil {
		return api.Snapshot{}, err
	}
	if len(t.Lent) > 0 {
		p.Stage("snapshot", "snapshot %s holds what vm %s was lent (%s) in its memory file: remove it with `banger vm snapshot rm %s` when done", t.ID, v.Name, strings.Join(t.Lent, ", "), t.ID)
	}
	s.lifecycle(ctx, v.Name, "snapshot", "snapshot %s", t.ID)
	return s.snapshotView(ctx, t)
}

func (s *Service) snapshot(ctx context.Context, v store.VM, name string, p operation.Progress) (t template.Template, err error) {
	if v.State != api.VMRunning {
		return t, fmt.Errorf("vm %s is %s, not running: %w", v.Name, v.State, errdefs.ErrConflict)
	}
	if name == "" {
		name = fmt.Sprintf("%s-%s", v.Name, time.Now().UTC().Format("20060102-150405"))
		if names.Validate("snapshot", name) != nil {
			name = "snapshot-" + time.Now().UTC().Format("20060102-150405.000")
		}
	}
	dir := s.d.Layout.VM(v.Name)
	var b boot
	data, err := os.ReadFile(filepath.Join(dir, bootFile))
	if err == nil {
		err = json.Unmarshal(data, &b)
	}
	if err != nil || len(b.Disks) == 0 {
		return t, fmt.Errorf("vm %s was started by an older banger, which did not record its layout: restart it first: %w", v.Name, errdefs.ErrConflict)
	}
	build, err := s.snapshotsDir().Build(name)
	if err != nil {
		return t, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(build)
		}
	}()
	cfg := s.vmmConfig(v)
	cfg.Disks = b.Disks
	var disks []vmm.Disk
	p.Stage("snapshot", "saving vm %s's memory", v.Name)
	paused, err := s.d.Driver.Snapshot(ctx, cfg, filepath.Join(build, template.StateFile), func() error {
		for _, d := range b.Disks {
			if d.ReadOnly {
				// The kernel's modules: shared, never written, and
				// found again at the restore.
				continue
			}
			dst := filepath.Join(build, d.ID+"."+d.Format)
			if err := vmdisk.Copy(d.Path, dst); err != nil {
				return fmt.Errorf("disk %s: %w", d.ID, err)
			}
			disks = append(disks, vmm.Disk{ID: d.ID, Path: dst, Format: d.Format})
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	p.Stage("snapshot", "vm %s was paused %s, for the copy of its memory, disks and device state", v.Name, paused.Round(time.Millisecond))
	final := filepath.Join(string(s.snapshotsDir()), name)
	if root := disks[0]; root.Format == "qcow2" {
		// The copied overlay names the VM's own backing file: the
		// snapshot keeps a link of its own, so that it outlives the VM.
		backing, format, err := s.d.Driver.Backing(ctx, root.Path)
		if err != nil {
			return t, err
		}
		if backing != "" {
			if err := os.Link(backing, filepath.Join(build, "base")); err != nil {
				return t, fmt.Errorf("link the root disk's backing file: %w", err)
			}
			if err := s.d.Driver.Rebase(ctx, root.Path, filepath.Join(final, "base"), format); err != nil {
				return t, err
			}
		}
	}
	vmmBuild, err := s.d.Driver.Version(ctx)
	if err != nil {
		return t, err
	}
	t = template.Template{
		ID: name, Disk: disks[0], Disks: disks[1:], RAM: b.RAM, Source: v.Name, Work: v.Work, HostKey: v.HostKey,
		Owner: peer.UID(ctx), Lent: lent.Names(s.d.Layout.VM(v.Name), v),
		CreatedAt: time.Now().UTC(), Paused: paused,
		Key: template.Key{Image: v.Image, Kernel: v.Kernel, VMM: s.d.Driver.Name() + " " + vmmBuild, Accel: v.Accel, CPUs: v.CPUs, MemoryMB: v.MemoryMB, DiskBytes: v.DiskBytes, Modules: hasModules(b.Disks), Init: v.Init},
	}
	if err := s.snapshotsDir().Publish(build, t); err != nil {
		return t, err
	}
	s.d.Log.Info("took snapshot", "vm", v.Name, "snapshot", name, "paused", paused)
	return s.snapshotsDir().Get(name)
}

// forkDisks gives a new VM copies of snapshot t's disks (reflinks where
// the file system shares blocks). The root disk is the VM's overlay as
// it was, small, and its backing file is linked into the new VM's
// directory: the fork outlives the snapshot.
func (s *Service) forkDisks(ctx context.Context, t template.Template, dir string) error {
	root := filepath.Join(dir, vmdisk.RootRaw)
	if t.Disk.Format == "qcow2" {
		root = filepath.Join(dir, vmdisk.RootQcow2)
	}
	if err := vmdisk.Copy(t.Disk.Path, root); err != nil {
		return err
	}
	if base := filepath.Join(t.Dir, "base"); t.Disk.Format == "qcow2" && vmdisk.Exists(base) {
		_, format, err := s.d.Driver.Backing(ctx, t.Disk.Path)
		if err != nil {
			return err
		}
		link := filepath.Join(dir, vmdisk.SnapshotBase)
		if err := os.Link(base, link); err != nil {
			return fmt.Errorf("link snapshot %s's backing disk: %w", t.ID, err)
		}
		if err := s.d.Driver.Rebase(ctx, root, link, format); err != nil {
			return err
		}
	}
	for _, d := range t.Disks {
		if err := vmdisk.Copy(d.Path, s.forkDiskPath(t, dir, d)); err != nil {
			return err
		}
	}
	return nil
}

// forkDiskPath is where a fork keeps a copy of the snapshot's disk d.
func (s *Service) forkDiskPath(t template.Template, dir string, d vmm.Disk) string {
	if d.ID == "work" && t.Work != nil {
		return workDisk(dir)
	}
	return filepath.Join(dir, vmdisk.EmptyWork)
}

// resumeSnapshot starts a fork for the first time: from its snapshot's
// state, in its snapshot's layout, then given its own identity.
func (s *Service) resumeSnapshot(ctx context.Context, v *store.VM, cold vmm.Config, timeout time.Duration, p operation.Progress) error {
	t, err := s.getSnapshot(ctx, v.Snapshot)
	if err != nil {
		return fmt.Errorf("vm %s resumes from snapshot %s: %w", v.Name, v.Snapshot, err)
	}
	dir := s.d.Layout.VM(v.Name)
	root, err := vmdisk.Root(dir)
	if err != nil {
		return err
	}
	cfg := cold
	cfg.Disks = []vmm.Disk{root}
	for _, d := range t.Disks {
		cfg.Disks = append(cfg.Disks, vmm.Disk{ID: d.ID, Path: s.forkDiskPath(t, dir, d), Format: d.Format})
	}
	if t.Key.Modules {
		m, ok := vmdisk.Modules(cold.Disks)
		if !ok {
			return fmt.Errorf("vm %s resumes from snapshot %s, whose guest had its kernel's modules disk, and kernel %s has none now (is depmod installed?): %w", v.Name, v.Snapshot, v.Kernel, errdefs.ErrConflict)
		}
		cfg.Disks = append(cfg.Disks, m)
	}
	cfg.Memory = boot{RAM: t.RAM}.memory()
	cfg.Restore = t.State()
	if err := s.resumeFrom(ctx, v, cfg, "snapshot "+t.ID, t.HostKey, false, timeout, p); err != nil {
		return err
	}
	// The fork woke with the snapshot's memory, lent credentials and all.
	return lent.Add(s.d.Layout.VM(v.Name), *v, t.Lent)
}

// CheckFork answers quickly whether Fork can start.
func (s *Service) CheckFork(ctx context.Context, vmName string, req api.ForkRequest) error {
	if err := s.CheckSnapshot(ctx, vmName, api.SnapshotRequest{WithLent: req.WithLent}); err != nil {
		return err
	}
	return s.CheckCreate(ctx, api.VMCreateRequest{Name: req.Name, AuthorizedKeys: req.Keys})
}

// Fork makes a new VM from a running one: a snapshot, taken while the VM
// runs on, that the new VM resumes from and that is then dropped (the new
// VM keeps what it needs of it).
func (s *Service) Fork(ctx context.Context, vmName string, req api.ForkRequest, p operation.Progress) (api.VM, error) {
	if err := s.CheckFork(ctx, vmName, req); err != nil {
		return api.VM{}, err
	}
	v, unlock, err := s.lockedGet(ctx, vmName, p)
	if err != nil {
		return api.VM{}, err
	}
	t, err := s.snapshot(ctx, v, fmt.Sprintf("fork-%s-%s", newID(), time.Now().UTC().Format("150405")), p)
	unlock()
	if err != nil {
		return api.VM{}, err
	}
	defer s.snapshotsDir().Remove(t.ID)
	fork, err := s.Create(ctx, api.VMCreateRequest{Name: req.Name, Snapshot: t.ID, AuthorizedKeys: req.Keys, Start: true}, p)
	if err == nil {
		s.lifecycle(ctx, v.Name, "fork", "forked as vm %s", fork.Name)
	}
	return fork, err
}

// Snapshots lists the caller's snapshots (root's: all).
func (s *Service) Snapshots(ctx context.Context) ([]api.Snapshot, error) {
	ts, bad := s.snapshotsDir().List()
	out := []api.Snapshot{}
	for _, t := range ts {
		if !peer.Owns(ctx, t.Owner) {
			continue
		}
		sv, err := s.snapshotView(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, sv)
	}
	for name, err := range bad {
		// Whose a damaged record was is unknown: root's to clear.
		if peer.Root(ctx) {
			out = append(out, api.Snapshot{Name: name, UsedBy: []string{}, Problem: err.Error()})
		}
	}
	return out, nil
}

func (s *Service) snapshotView(ctx context.Context, t template.Template) (api.Snapshot, error) {
	all, err := s.d.Store.VMsUsing(ctx, "snapshot", t.ID)
	if err != nil {
		return api.Snapshot{}, err
	}
	// Forks root made of a user's snapshot are not the user's to see.
	used := []string{}
	for _, n := range all {
		if v, err := s.d.Store.GetVM(ctx, n); err == nil && peer.Owns(ctx, v.Owner) {
			used = append(used, n)
		}
	}
	sv := api.Snapshot{Name: t.ID, Owner: t.Owner, Lent: t.Lent, VM: t.Source, Image: t.Key.Image, Kernel: t.Key.Kernel, CPUs: t.Key.CPUs, MemoryMB: t.Key.MemoryMB,
		Bytes: t.Bytes(), CreatedAt: t.CreatedAt, PausedMillis: t.Paused.Milliseconds(), UsedBy: used}
	if m := t.Missing(); m != "" {
		sv.Problem = "lost its " + m
	}
	return sv, nil
}

// RemoveSnapshot drops a snapshot; VMs forked from it keep their disks.
func (s *Service) RemoveSnapshot(ctx context.Context, name string) error {
	if _, err := s.getSnapshot(ctx, name); err != nil {
		return err
	}
	return s.snapshotsDir().Remove(name)
}

func hasModules(disks []vmm.Disk) bool {
	_, ok := vmdisk.Modules(disks)
	return ok
}
