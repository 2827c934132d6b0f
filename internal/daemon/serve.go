package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/banger-dev/banger/internal/daemon/server"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/version"
	"github.com/banger-dev/banger/internal/service/vm"
	"github.com/banger-dev/banger/internal/service/vm/vmsecret"
	"github.com/banger-dev/banger/internal/service/vm/vmwork"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/api"
)

// serve answers the API on the socket until ctx ends or the server
// fails, then stops taking requests and cancels what still runs: every
// operation undoes its partial work before it returns.
func (d *daemon) serve(ctx context.Context, o Options) (err error) {
	opsCtx, cancelOps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOps()
	ops := operation.NewRegistry(opsCtx)
	srv := server.New(server.Deps{
		Kernels: d.kernels, Images: d.images, VMs: vms{d.vms, d.contents, d.secrets}, Operations: ops, Seeds: d.work, Uploads: d.uploads,
		Version: version.Info(), Log: d.log.With("service", "api"),
		Status:  func(ctx context.Context) (api.Status, error) { return d.status(ctx, ops) },
		Reprobe: d.reprobe,
	})
	ln, err := listen(o.Socket, d.cfg.SocketGroup, d.log)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ConnContext: peer.ConnContext}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	d.log.Info("banger daemon ready", "socket", o.Socket, "state_dir", d.st.dir, "version", version.Info().Version, "pid", os.Getpid())
	if o.Ready != nil {
		o.Ready()
	}
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case err = <-serveErr:
		d.log.Error("API server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cancelOps()
	hs.Shutdown(sctx)
	waited := make(chan struct{})
	go func() { ops.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		d.log.Warn("operations still running at exit; their leftovers are removed at next start")
	}
	os.Remove(o.Socket)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// status is what `banger status` shows: counts as ctx's caller sees
// them, and how the host stands.
func (d *daemon) status(ctx context.Context, ops *operation.Registry) (api.Status, error) {
	s := api.Status{Daemon: version.Info(), APIVersion: api.Prefix[1:], PID: os.Getpid(), StateDir: d.st.dir, StartedAt: d.started}
	var err error
	if s.Kernels, err = d.kernels.Count(ctx); err != nil {
		return s, err
	}
	if s.Images, err = d.images.Count(ctx); err != nil {
		return s, err
	}
	if s.VMs, err = d.vms.Count(ctx); err != nil {
		return s, err
	}
	s.Operations = len(ops.List(ctx))
	s.Accel = d.driver.Accelerator.Status()
	s.Network = d.driver.Network()
	s.DefaultNetwork = d.cfg.DefaultNetwork
	s.Guard = d.guard
	s.Bridge = fmt.Sprintf("%s, %s", d.netCfg.Bridge, d.netCfg.Subnet)
	if d.netWhy != "" {
		s.Bridge = "unavailable: " + d.netWhy
	}
	s.MaxSeedBytes = d.cfg.MaxSeedBytes
	return s, nil
}

// reprobe proves the accelerator afresh, for doctor.
func (d *daemon) reprobe(ctx context.Context) api.Accel {
	if err := d.driver.CannotStart(); err != nil {
		return accel.Choice{}.API(err)
	}
	c, err := d.driver.Accelerator.Reprobe(ctx)
	d.log.Info("accelerator probed again", "accel", c.String(), "err", err)
	return c.API(err)
}

// vms is what the API serves of VMs: their lifecycle, what is done
// with their contents, and the secrets they were given, three services.
type vms struct {
	*lifecycle
	*contents
	secrets *vmsecret.Service
}

type (
	lifecycle = vm.Service
	contents  = vmwork.Service
)

// Get is the VM with what it was given of secrets.
func (s vms) Get(ctx context.Context, name string) (api.VM, error) {
	v, err := s.lifecycle.Get(ctx, name)
	if err == nil {
		v.Secrets = s.secrets.View(v.Name)
	}
	return v, err
}

// List is the VMs with what each was given of secrets.
func (s vms) List(ctx context.Context) ([]api.VM, error) {
	vs, err := s.lifecycle.List(ctx)
	for i := range vs {
		vs[i].Secrets = s.secrets.View(vs[i].Name)
	}
	return vs, err
}

// Secrets gives a running VM secrets.
func (s vms) Secrets(ctx context.Context, name string, req api.SecretsRequest) (api.VM, error) {
	return s.secrets.Grant(ctx, name, req)
}

// Stop stops a VM; the values it was given are dropped with its boot.
// Only once it did: the caller may not be the VM's owner. (A restart's
// old boot is dropped when its VMM is seen gone, and a grant to the new
// boot replaces it.)
func (s vms) Stop(ctx context.Context, name string, req api.VMStopRequest, p operation.Progress) (api.VM, error) {
	v, err := s.lifecycle.Stop(ctx, name, req, p)
	if err == nil {
		s.secrets.Forget(name)
	}
	return v, err
}

// Remove removes a VM, and revokes its secrets: the values are dropped,
// and its proxy's CA and placeholders mean nothing from then on.
func (s vms) Remove(ctx context.Context, name string, force bool) error {
	err := s.lifecycle.Remove(ctx, name, force)
	if err == nil {
		s.secrets.Forget(name)
	}
	return err
}
