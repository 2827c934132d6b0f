package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/revert"
	"github.com/banger-dev/banger/internal/service/vm/request"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// lockedGet takes the VM's lock and returns its record, up to date.
func (s *Service) lockedGet(ctx context.Context, name string, p operation.Progress) (store.VM, func(), error) {
	unlock, err := s.lock(ctx, name, p)
	if err != nil {
		return store.VM{}, nil, err
	}
	v, err := s.get(ctx, name)
	if err != nil {
		unlock()
		return store.VM{}, nil, err
	}
	return v, unlock, nil
}

// CheckCreate answers quickly whether Create can start: the request is
// well formed and the name is free.
func (s *Service) CheckCreate(ctx context.Context, req api.VMCreateRequest) error {
	_, err := s.checkCreate(ctx, req)
	return err
}

// checkCreate is CheckCreate, returning the request's checked values.
func (s *Service) checkCreate(ctx context.Context, req api.VMCreateRequest) (params, error) {
	if req.Name != "" {
		if err := names.Validate("vm", req.Name); err != nil {
			return params{}, err
		}
		if v, err := s.d.Store.GetVM(ctx, req.Name); err == nil {
			if !peer.Owns(ctx, v.Owner) {
				// VM names are one namespace: say it is taken, not by whom.
				return params{}, fmt.Errorf("vm name %q is not available: pick another --name: %w", req.Name, errdefs.ErrConflict)
			}
			return params{}, fmt.Errorf("vm %q already exists: pick another --name, or remove it with `banger vm rm -f %s`: %w", req.Name, req.Name, errdefs.ErrConflict)
		}
	}
	// An OCI reference (with '/', ':' or '@') is the image service's to check.
	if req.Image != "" && !strings.ContainsAny(req.Image, "/:@") {
		if err := names.Validate("image", req.Image); err != nil {
			return params{}, err
		}
	}
	if req.Kernel != "" {
		if err := names.Validate("kernel", req.Kernel); err != nil {
			return params{}, err
		}
	}
	if req.Snapshot != "" {
		if _, err := s.getSnapshot(ctx, req.Snapshot); err != nil {
			return params{}, err
		}
		if req.Init != "" {
			return params{}, fmt.Errorf("a fork of snapshot %s boots with its VM's init: no --init: %w", req.Snapshot, errdefs.ErrInvalid)
		}
	}
	if err := guestproto.CheckInit(req.Init); err != nil {
		return params{}, fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	prm, err := s.checkParams(req)
	if err != nil {
		return params{}, err
	}
	if prm.network, prm.egress, err = s.net().Check(ctx, req, prm.ports, s.exists); err != nil {
		return params{}, err
	}
	if !peer.Root(ctx) {
		// The daemon binds published ports as root: a caller who is not
		// gets only the ports it could bind itself.
		start := request.UnprivilegedPortStart()
		for _, f := range prm.ports {
			if f.HostPort < start {
				return params{}, fmt.Errorf("-p %d:%d: host ports below %d are privileged on this host (net.ipv4.ip_unprivileged_port_start), and only root may publish one: pick a port from %d up: %w", f.HostPort, f.GuestPort, start, start, errdefs.ErrPermission)
			}
		}
	}
	if err := request.MadeBy(req.MadeBy); err != nil {
		return params{}, err
	}
	if err := s.quota.CheckCount(ctx, peer.UID(ctx)); err != nil {
		return params{}, err
	}
	if req.Start {
		// A VM that cannot boot here is refused before anything is made.
		if _, err := s.d.Driver.Accel(ctx); err != nil {
			return params{}, err
		}
	}
	return prm, nil
}

// Create makes a VM: its image and kernel (pulled when not local), its
// own root disk. With req.Start it boots it too, and a VM that does not
// become ready is removed again.
func (s *Service) Create(ctx context.Context, req api.VMCreateRequest, p operation.Progress) (api.VM, error) {
	if req.Init == guestproto.InitBanger {
		req.Init = "" // the default, recorded as such
	}
	prm, err := s.checkCreate(ctx, req)
	if err != nil {
		return api.VM{}, err
	}
	if req.Name == "" {
		req.Name = names.Generate(func(n string) bool {
			_, err := s.d.Store.GetVM(ctx, n)
			return err == nil
		}, rand.IntN)
	}
	unlock, err := s.lock(ctx, req.Name, p)
	if err != nil {
		return api.VM{}, err
	}
	v, err := s.create(ctx, req, prm, p)
	unlock()
	if err != nil && req.Seed != "" && s.d.Work != nil {
		s.d.Work.Discard(ctx, req.Seed)
	}
	if err != nil || !req.Start {
		return s.view(v), err
	}
	out, err := s.Start(ctx, v.Name, api.VMStartRequest{ReadyTimeout: req.ReadyTimeout}, p)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := s.Remove(cctx, v.Name, true); rerr != nil {
			s.d.Log.Error("remove vm that failed to start", "vm", v.Name, "err", rerr)
		}
		return api.VM{}, err
	}
	return out, nil
}

func (s *Service) create(ctx context.Context, req api.VMCreateRequest, prm params, p operation.Progress) (store.VM, error) {
	if _, err := s.d.Store.GetVM(ctx, req.Name); err == nil {
		return store.VM{}, fmt.Errorf("vm %q already exists: %w", req.Name, errdefs.ErrConflict)
	}
	snap, err := s.forkSource(ctx, &req, &prm)
	if err != nil {
		return store.VM{}, err
	}
	im, kernel, err := s.resolveBoot(ctx, req, p)
	if err != nil {
		return store.VM{}, err
	}
	size, err := s.diskSize(im, prm.disk)
	if err != nil {
		return store.VM{}, err
	}
	r := revert.New()
	defer r.Fail()
	dir, err := s.makeDir(req.Name, r)
	if err != nil {
		return store.VM{}, err
	}
	work, err := s.makeDisks(ctx, req, im, snap, size, dir, p)
	if err != nil {
		return store.VM{}, err
	}
	// A bridge-mode guest is reached at its own address, not a forward.
	sshPort := 0
	if prm.network != api.NetBridge {
		if sshPort, err = request.FreePort(); err != nil {
			return store.VM{}, err
		}
	}
	v := store.VM{
		VM: api.VM{
			Name: req.Name, Owner: peer.UID(ctx), State: api.VMStopped, Image: im.Name, Kernel: kernel,
			CPUs: prm.cpus, MemoryMB: prm.memoryMB, DiskBytes: size,
			SSHPort: sshPort, Ports: prm.ports, CreatedAt: time.Now().UTC(), Work: work, MadeBy: req.MadeBy,
			Snapshot: req.Snapshot, Network: prm.network, Egress: prm.egress, Init: req.Init,
		},
		ID: newID(), AuthorizedKeys: prm.keys,
	}
	if err := s.quota.Insert(ctx, v.Owner, func() error { return s.d.Store.InsertVM(ctx, v) }); err != nil {
		return v, err
	}
	r.Success()
	s.d.Log.Info("created vm", "vm", v.Name, "image", v.Image, "kernel", v.Kernel)
	s.recordCreate(ctx, v)
	return v, nil
}

// forkSource returns the snapshot a fork is made from (nil for a VM made
// from an image), and sets what the fork is made of to the snapshot's.
func (s *Service) forkSource(ctx context.Context, req *api.VMCreateRequest, prm *params) (*template.Template, error) {
	if req.Snapshot == "" {
		return nil, nil
	}
	t, err := s.getSnapshot(ctx, req.Snapshot)
	if err != nil {
		return nil, err
	}
	if req.Seed != "" {
		return nil, fmt.Errorf("a fork of snapshot %s has its work disk: no seed: %w", t.ID, errdefs.ErrInvalid)
	}
	// A saved state loads only into the VMM build that saved it: say
	// so now, not with the VMM's own words after a failed start.
	if build, err := s.d.Driver.Version(ctx); err == nil && t.Key.VMM != "" && t.Key.VMM != s.d.Driver.Name()+" "+build {
		return nil, fmt.Errorf("snapshot %s was taken with %s, and this host runs %s %s, which cannot load it: remove it with `banger vm snapshot rm %s`: %w", t.ID, t.Key.VMM, s.d.Driver.Name(), build, t.ID, errdefs.ErrConflict)
	}
	req.Image, req.Kernel, req.Init = t.Key.Image, t.Key.Kernel, t.Key.Init
	prm.cpus, prm.memoryMB, prm.disk = t.Key.CPUs, t.Key.MemoryMB, t.Key.DiskBytes
	return &t, nil
}

// resolveBoot makes the VM's image and kernel local, pulling what is
// not. The kernel is resolved once: --kernel when given, else the
// image's, so a VM with a kernel of its own never reaches for the
// image's default one.
func (s *Service) resolveBoot(ctx context.Context, req api.VMCreateRequest, p operation.Progress) (api.Image, string, error) {
	imageName := req.Image
	if imageName == "" {
		imageName = s.d.Defaults.Image
	}
	im, err := s.d.Images.Ensure(ctx, imageName, p)
	if err != nil {
		return im, "", err
	}
	kernel := req.Kernel
	if kernel == "" {
		kernel = im.Kernel
	}
	if _, err := s.d.Kernels.Ensure(ctx, kernel, p); err != nil {
		return im, "", fmt.Errorf("kernel %s: %w", kernel, err)
	}
	return im, kernel, nil
}

// diskSize is the root disk's size: asked, or the default, or the
// image's when that is larger; in whole MiB.
func (s *Service) diskSize(im api.Image, asked int64) (int64, error) {
	st, err := os.Stat(im.Disk)
	if err != nil {
		return 0, fmt.Errorf("image %s disk: %w", im.Name, err)
	}
	size := asked
	if size == 0 {
		size = max(s.d.Defaults.DiskBytes, st.Size())
	}
	return (size + 1<<20 - 1) &^ (1<<20 - 1), nil
}

// makeDir makes the VM's directory, removed again unless r succeeds.
func (s *Service) makeDir(name string, r *revert.Reverter) (string, error) {
	dir := s.d.Layout.VM(name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			// No record owns it: a crash left it behind.
			os.RemoveAll(dir)
			err = os.Mkdir(dir, 0o700)
		}
		if err != nil {
			return "", fmt.Errorf("create vm directory: %w", err)
		}
	}
	r.Add(func() { os.RemoveAll(dir) })
	return dir, nil
}

// makeDisks makes the VM's root disk (from its image, or a fork's from
// its snapshot) and attaches its work disk, and returns its work.
func (s *Service) makeDisks(ctx context.Context, req api.VMCreateRequest, im api.Image, snap *template.Template, size int64, dir string, p operation.Progress) (*api.Work, error) {
	var work *api.Work
	if snap != nil {
		p.Stage("disk", "making the disks of vm %s from snapshot %s", req.Name, snap.ID)
		if err := s.forkDisks(ctx, *snap, dir); err != nil {
			return nil, err
		}
		if snap.Work != nil {
			w := *snap.Work
			work = &w
		}
	} else {
		base, err := s.baseFor(ctx, im, size, p)
		if err != nil {
			return nil, err
		}
		p.Stage("disk", "making the root disk of vm %s from image %s", req.Name, im.Name)
		if _, err := vmdisk.Make(ctx, s.d.Driver, base, dir); err != nil {
			return nil, err
		}
	}
	if req.Seed == "" {
		return work, nil
	}
	if s.d.Work == nil {
		return nil, fmt.Errorf("this daemon takes no work seeds: %w", errdefs.ErrInvalid)
	}
	p.Stage("work", "attaching the work disk to vm %s", req.Name)
	w, err := s.d.Work.Claim(ctx, req.Seed, dir)
	if err != nil {
		return nil, err
	}
	return &w, nil
}

func (s *Service) vmmConfig(v store.VM) vmm.Config {
	dir := s.d.Layout.VM(v.Name)
	return vmm.Config{
		Name: v.Name, CPUs: v.CPUs, MemoryMB: v.MemoryMB,
		Console: s.console(v.Name), Control: s.controlSocket(v), Log: dir + "/vmm.log",
	}
}

// Stop stops a VM: its agent is asked to power off; if the guest has not
// gone within the timeout, the VMM is told to quit, then killed.
func (s *Service) Stop(ctx context.Context, name string, req api.VMStopRequest, p operation.Progress) (api.VM, error) {
	timeout, err := request.Duration(req.Timeout, s.d.Defaults.StopTimeout, true)
	if err != nil {
		return api.VM{}, err
	}
	v, unlock, err := s.lockedGet(ctx, name, p)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	if v.State == api.VMStopped {
		p.Stage("stop", "vm %s is already stopped", name)
		return s.view(v), nil
	}
	err = s.stop(ctx, &v, timeout, p)
	if err == nil {
		s.lifecycle(ctx, name, "stop", "stopped")
	}
	return s.view(v), err
}

func (s *Service) stop(ctx context.Context, v *store.VM, timeout time.Duration, p operation.Progress) error {
	proc := process(*v)
	v.State = api.VMStopping
	s.d.Store.UpdateVM(ctx, *v)
	var errs []error
	if timeout > 0 {
		p.Stage("stop", "asking vm %s to power off (up to %s)", v.Name, timeout)
		if err := s.powerOff(ctx, *v); err != nil {
			s.d.Log.Warn("guest did not take the power-off request", "vm", v.Name, "err", err)
		} else if waitExit(ctx, proc, timeout) {
			return s.markStopped(ctx, v)
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	p.Stage("stop", "vm %s did not power off: stopping its VMM", v.Name)
	if err := s.d.Driver.Quit(cctx, s.vmmConfig(*v)); err != nil {
		s.d.Log.Warn("VMM quit", "vm", v.Name, "err", err)
	}
	if !waitExit(cctx, proc, 3*time.Second) {
		if err := proc.Kill(); err != nil {
			errs = append(errs, err)
		}
		waitExit(cctx, proc, 3*time.Second)
	}
	errs = append(errs, s.markStopped(cctx, v))
	return errors.Join(errs...)
}

func (s *Service) markStopped(ctx context.Context, v *store.VM) error {
	v.State, v.PID, v.PIDStart = api.VMStopped, 0, 0
	os.Remove(s.controlSocket(*v))
	s.net().Detach(context.WithoutCancel(ctx), *v)
	return s.d.Store.UpdateVM(context.WithoutCancel(ctx), *v)
}

// waitExit waits up to d for p to exit.
func waitExit(ctx context.Context, p vmm.Process, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.Alive() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Restart stops a VM (if it runs) and starts it again.
func (s *Service) Restart(ctx context.Context, name string, req api.VMStartRequest, p operation.Progress) (api.VM, error) {
	if _, err := s.Stop(ctx, name, api.VMStopRequest{}, p); err != nil {
		return api.VM{}, err
	}
	return s.Start(ctx, name, req, p)
}

// Remove deletes a VM and its disks. A running VM is refused unless
// force, which kills it first.
func (s *Service) Remove(ctx context.Context, name string, force bool) error {
	v, unlock, err := s.lockedGet(ctx, name, operation.Discard)
	if err != nil {
		return err
	}
	defer unlock()
	if !force && v.Work != nil && v.Work.PulledAt.IsZero() {
		return fmt.Errorf("vm %s has work in /work that was never pulled: see it with `banger vm diff %s`, bring it back with `banger vm pull %s`, or drop it with `banger vm rm -f %s`: %w", name, name, name, name, errdefs.ErrConflict)
	}
	if v.State != api.VMStopped {
		if !force {
			return fmt.Errorf("vm %s is %s: stop it first (`banger vm stop %s`) or remove it anyway with `banger vm rm -f %s`: %w", name, v.State, name, name, errdefs.ErrConflict)
		}
		if err := s.stop(ctx, &v, 0, operation.Discard); err != nil {
			return err
		}
	}
	if err := s.removeFiles(v); err != nil {
		return err
	}
	if v.Network == api.NetBridge && s.d.Net != nil {
		if err := s.d.Net.Release(context.WithoutCancel(ctx), v.Name, v.ID); err != nil {
			return err
		}
	}
	if v.Network == api.NetUser && s.d.Guard != nil {
		if err := s.d.Guard.Forget(context.WithoutCancel(ctx), v.Name); err != nil {
			return err
		}
	}
	s.d.Log.Info("removed vm", "vm", name)
	if err := s.d.Store.DeleteVM(context.WithoutCancel(ctx), name); err != nil {
		return err
	}
	if s.d.Activity != nil {
		// Its record goes with it (export it first: vm report -o json).
		if err := s.d.Activity.Remove(context.WithoutCancel(ctx), name); err != nil {
			s.d.Log.Warn("remove the vm's activity record", "vm", name, "err", err)
		}
	}
	return nil
}

// Logs writes a VM's console log to w; with follow it goes on writing
// what the guest prints until the VM stops or ctx ends.
func (s *Service) Logs(ctx context.Context, name string, follow bool, w io.Writer, flush func()) error {
	v, err := s.get(ctx, name)
	if err != nil {
		return err
	}
	f, err := os.Open(s.console(name))
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil
		}
	} else if err != nil {
		return err
	} else {
		defer f.Close()
	}
	for {
		if f != nil {
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
			flush()
		}
		if !follow {
			return nil
		}
		if v.State == api.VMStopped {
			// Follow a stopped VM until it starts again? No: like
			// `docker logs -f` on a stopped container, end here.
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		if f == nil {
			if f, err = os.Open(s.console(name)); err == nil {
				defer f.Close()
			}
		}
		if v, err = s.d.Store.GetVM(ctx, name); err != nil {
			return nil
		}
		if err := s.refresh(ctx, &v); err != nil {
			return err
		}
	}
}
