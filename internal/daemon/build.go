package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/format/download"
	"github.com/banger-dev/banger/internal/format/guestdisk"
	"github.com/banger-dev/banger/internal/format/registry"
	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/kit/sandbox"
	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/service/activity"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/image"
	"github.com/banger-dev/banger/internal/service/image/imagecat"
	"github.com/banger-dev/banger/internal/service/kernel"
	"github.com/banger-dev/banger/internal/service/kernel/kernelcat"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/service/vm"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/service/vm/usage"
	"github.com/banger-dev/banger/internal/service/vm/vmsecret"
	"github.com/banger-dev/banger/internal/service/vm/vmwork"
	"github.com/banger-dev/banger/internal/service/workspace"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm/qemu"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// daemon is the built daemon: its services, what status reports of the
// host, and what close undoes.
type daemon struct {
	cfg      config.Config
	mode     accel.Mode
	st       *state
	log      *slog.Logger
	driver   *qemu.Driver
	work     *workspace.Service
	uploads  *upload.Store
	vms      *vm.Service
	contents *vmwork.Service
	secrets  *vmsecret.Service
	activity *activity.Recorder // nil: no record kept
	kernels  *kernel.Service
	images   *image.Service
	hostNet  *hostnet.Service
	netCfg   hostnet.Config
	netWhy   string // why bridge mode cannot run, or ""
	guard    string // how the guard stands, for status
	closers  []func()
	started  time.Time
	agent    string
	download download.Client
	registry *registry.Client
}

// build makes every service, recovers what a crash left, and starts the
// accelerator probe and the guard.
func build(ctx context.Context, o Options, cfg config.Config, mode accel.Mode, st *state) (*daemon, error) {
	d := &daemon{cfg: cfg, mode: mode, st: st, log: o.Log, started: time.Now().UTC()}
	d.download = download.Client{Limit: cfg.MaxDownloadBytes}
	d.registry = &registry.Client{Mirrors: cfg.RegistryMirrors, Insecure: cfg.InsecureRegistries}
	var err error
	if d.agent, err = findAgent(cfg.AgentPath); err != nil {
		return nil, err
	}
	if d.agent == "" {
		d.log.Warn("no banger-agent binary found (next to banger, on PATH, or agent_path in the config): VMs cannot boot kernels that need banger's initramfs")
	}
	d.startDriver(ctx, o)
	if cfg.ActivityEvents > 0 {
		d.activity = activity.New(st.db, activity.Options{Max: cfg.ActivityEvents, Log: d.log.With("service", "activity")})
		// After the services that record (the closers run in reverse).
		d.closers = append(d.closers, func() { d.activity.Close() })
	}
	d.buildHostSide(ctx, o)
	if err := d.buildServices(ctx, o); err != nil {
		d.close()
		return nil, err
	}
	d.log.Info("vmm driver", "driver", d.driver.Name(), "runs_as", d.driver.RunAs)
	if err := d.driver.CannotStart(); err != nil {
		d.log.Error("no VM can start", "err", err)
	}
	return d, nil
}

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// startDriver makes the qemu driver and proves the accelerator in the
// background: the API answers at once, and the first VM start waits for
// the verdict. A VMM that could not drop root is not started even to
// probe.
func (d *daemon) startDriver(ctx context.Context, o Options) {
	cfg := d.cfg
	d.driver = qemu.New(cfg.VMMUser, qemu.UIDRange{From: cfg.VMMUIDBase, Count: cfg.VMMUIDCount}, d.mode, filepath.Join(d.st.lay.Cache(), "accel.json"))
	d.driver.DiskCache = cfg.DiskCache
	d.driver.Runner = o.Runner
	d.driver.UserNet = cfg.UserNet
	if err := d.driver.CannotStart(); err != nil {
		d.log.Error("no VM can start", "err", err)
		return
	}
	d.driver.Accelerator.Start(ctx)
	go func() {
		c, err := d.driver.Accelerator.Get(ctx)
		if ctx.Err() != nil {
			return
		}
		args := []any{"accel", c.String(), "cpu", c.CPU, "mode", d.mode, "kvm", c.KVM, "cached", c.Cached, "probe_took", time.Duration(c.ProbeTook).Round(time.Millisecond)}
		if err != nil {
			d.log.Error("no VM can start: the configured accelerator does not work", append(args, "err", err)...)
			return
		}
		d.log.Info("accelerator chosen", args...)
	}()
}

// buildHostSide makes what VMs use of the host beside the VMM: work
// disks, uploads, the bridge network and the guard.
func (d *daemon) buildHostSide(ctx context.Context, o Options) {
	cfg, lay := d.cfg, d.st.lay
	d.work = workspace.New(workspace.Deps{
		Runner: o.Runner, Staging: lay.Staging(), MaxSeedBytes: cfg.MaxSeedBytes,
		DiskBytes: cfg.DefaultDiskBytes(), Log: d.log.With("service", "workspace"),
		Disks: d.guestDisks(), MaxPullBytes: cfg.MaxPullBytes, MaxPullEntries: cfg.MaxPullEntries,
	})
	d.work.Recover()
	d.uploads = &upload.Store{Dir: lay.Staging(), MaxBytes: cfg.MaxUnpackedBytes, Log: d.log.With("service", "upload")}
	d.uploads.Recover()
	d.netCfg = hostnet.Config{Bridge: cfg.BridgeName, Subnet: cfg.Subnet(), Upstream: cfg.Upstream(), Open: cfg.LAN()}
	if err := hostnet.Check(d.netCfg); err != nil {
		d.netWhy = err.Error()
		if cfg.DefaultNetwork == "bridge" {
			d.log.Error("default_network is bridge, but bridge mode cannot run here", "err", err)
		}
	} else {
		d.hostNet = hostnet.New(hostnet.Deps{Store: d.st.db, Log: d.log.With("service", "hostnet"), Config: d.netCfg, Activity: d.activity.Record})
		d.closers = append(d.closers, func() { d.hostNet.Close() })
	}
}

// guestDisks reads disks guests wrote, in the sandbox: as the uid just
// below the VMMs' range, no account's and no VMM's.
func (d *daemon) guestDisks() guestdisk.Reader {
	return guestdisk.Reader{Sandbox: sandbox.Spec{
		UID: d.cfg.VMMUIDBase - 1, GID: d.cfg.VMMUIDBase - 1,
		Memory: 2 << 30, Timeout: 30 * time.Minute,
	}}
}

// buildServices makes the kernel, image and VM services, each after what
// it needs (which VMs use an image or kernel is the store's and the saved
// states' to say, not the VM service's), and recovers their state.
func (d *daemon) buildServices(ctx context.Context, o Options) error {
	cfg, lay := d.cfg, d.st.lay
	key, err := sshkey.LoadOrCreate(lay.SSHKey(), "banger-daemon")
	if err != nil {
		return err
	}
	templates := d.sweepSavedStates()
	users := usage.Usage{Store: d.st.db, Snapshots: template.Dir(lay.Snapshots()), Templates: templates, Log: d.log.With("service", "vm")}
	d.kernels = kernel.New(kernel.Deps{
		Store: d.st.db, Users: users, Runner: o.Runner,
		Catalog: func(ctx context.Context) ([]api.KernelCatalogEntry, error) {
			return kernelcat.Load(ctx, cfg.KernelCatalogs, d.download.Bytes)
		},
		Downloader: d.download, Images: d.registry, Layout: lay, MaxUnpacked: cfg.MaxUnpackedBytes,
		Uploads: d.uploads, Log: d.log.With("service", "kernel"),
	})
	if err := d.kernels.Recover(ctx); err != nil {
		return err
	}
	keys, err := readKeys(cfg.SSHPublicKeys)
	if err != nil {
		return err
	}
	d.images = image.New(image.Deps{
		Store: d.st.db, Users: users, Kernels: d.kernels, Registry: d.registry,
		Catalog: func(ctx context.Context) ([]api.ImageCatalogEntry, error) {
			return imagecat.Load(ctx, cfg.ImageCatalogs, d.download.Bytes)
		},
		Downloader: d.download, Runner: o.Runner, Layout: lay, DefaultKernel: cfg.DefaultKernelName,
		MaxUnpacked: cfg.MaxUnpackedBytes, DiskSize: cfg.DefaultDiskBytes(),
		Finalize: image.Finalize{AuthorizedKeys: keys, Agent: d.agent},
		Uploads:  d.uploads, Log: d.log.With("service", "image"),
	})
	if err := d.images.Recover(ctx); err != nil {
		return err
	}
	guard, guardState := startGuard(ctx, cfg, d.netCfg, d.st.db, d.activity.Record, d.log.With("service", "guard"))
	d.guard = guardState
	d.vms = vm.New(d.vmDeps(o, guard, key, templates))
	d.contents = vmwork.New(vmwork.Deps{
		VMs: d.vms, Store: d.st.db, Work: d.work, GuestDisks: d.guestDisks(), MaxPromoteEntries: cfg.MaxPullEntries,
		Images: d.images, Driver: d.driver, Runner: o.Runner, Layout: lay, Key: key, DiskBytes: cfg.DefaultDiskBytes(),
		Log: d.log.With("service", "vm"),
	})
	roots, err := proxyRoots(cfg.ProxyCAFiles)
	if err != nil {
		return err
	}
	dialer := hostnet.ProxyDialer{Upstream: cfg.Upstream(), Subnet: cfg.Subnet(), Open: cfg.LAN(), Record: d.st.db.RecordResolved}
	d.secrets = vmsecret.New(vmsecret.Deps{
		VMs: d.vms, Key: key, Layout: lay, RootCAs: roots, Log: d.log.With("service", "secrets"),
		Dial: func(ctx context.Context, v store.VM, host, port string) (net.Conn, error) {
			policy, err := hostnet.ParseEgress(v.Egress)
			if err != nil {
				// A policy that cannot be read opens nothing.
				policy = hostnet.Egress{Mode: hostnet.EgressDeny}
			}
			c, err := dialer.Dial(ctx, v.Name, policy, host, port)
			ev := api.ActivityEvent{Kind: api.ActConnection, Action: "allowed", Via: api.ViaGuest, Addr: net.JoinHostPort(host, port), Detail: "through the secrets proxy"}
			if errors.Is(err, errdefs.ErrPermission) {
				ev.Action, ev.Detail = "refused", err.Error()
			}
			d.activity.Record(v.Name, ev)
			return c, err
		},
		Record: d.activity.Record,
	})
	return d.vms.Recover(ctx)
}

// proxyRoots is the host's trust store with the CA files the config
// adds, which the secrets proxy verifies real servers with.
func proxyRoots(files []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("proxy_ca_files: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("proxy_ca_files: %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// sweepSavedStates removes templates and snapshots a crash left half
// made, and returns the templates' directory ("" when templates are off).
func (d *daemon) sweepSavedStates() template.Dir {
	var templates template.Dir
	if d.cfg.Templates {
		templates = template.Dir(d.st.lay.Templates())
		if swept := templates.Sweep(); len(swept) > 0 {
			d.log.Info("removed unfinished templates", "dirs", swept)
		}
	}
	if swept := template.Dir(d.st.lay.Snapshots()).Sweep(); len(swept) > 0 {
		d.log.Info("removed unfinished snapshots", "dirs", swept)
	}
	return templates
}

func (d *daemon) vmDeps(o Options, guard *hostnet.Guard, key ssh.Signer, templates template.Dir) vm.Deps {
	cfg := d.cfg
	deps := vm.Deps{
		Work:  d.work,
		Store: d.st.db, Images: d.images, Kernels: d.kernels, Runner: o.Runner, Driver: d.driver, Layout: d.st.lay,
		NetWhy: d.netWhy, GuardWhy: d.guard, Agent: d.agent, Key: key, Templates: templates,
		Quota: quota(cfg),
		// Not the sandbox's uid (base - 1): depmod is not sandboxed, and
		// must not reach a sandboxed reader of another user's disk.
		Modules: cfg.GuestModules, ModulesUID: cfg.VMMUIDBase - 2,
		Defaults: vm.Defaults{
			Image: cfg.DefaultImageName, Network: cfg.DefaultNetwork, CPUs: cfg.DefaultCPUs, MemoryMB: cfg.DefaultMemoryMiB, DiskBytes: cfg.DefaultDiskBytes(),
			ReadyTimeout: cfg.ReadyTimeout.Duration, StopTimeout: cfg.StopTimeout.Duration,
		},
		Log: d.log.With("service", "vm"),
	}
	// Interfaces stay nil, not typed nils, where the part is off.
	if d.hostNet != nil {
		deps.Net = d.hostNet
	}
	if guard != nil {
		deps.Guard = guard
	}
	if d.activity != nil {
		deps.Activity = d.activity
	}
	return deps
}
