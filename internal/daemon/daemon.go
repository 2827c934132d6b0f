// Package daemon wires banger's services together and serves the API on
// a unix socket. It holds no business logic: it builds each service with
// the narrow dependencies it needs and hands them to the API server.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/daemon/server"
	"github.com/banger-dev/banger/internal/format/download"
	"github.com/banger-dev/banger/internal/format/guestdisk"
	"github.com/banger-dev/banger/internal/format/registry"
	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/sandbox"
	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/kit/version"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/image"
	"github.com/banger-dev/banger/internal/service/image/imagecat"
	"github.com/banger-dev/banger/internal/service/kernel"
	"github.com/banger-dev/banger/internal/service/kernel/kernelcat"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/service/vm"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/service/workspace"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm/qemu"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Defaults for the daemon's flags.
const (
	DefaultStateDir = "/var/lib/banger"
	DefaultSocket   = "/run/banger/banger.sock"
)

// Options configure a daemon.
type Options struct {
	StateDir   string
	Socket     string
	ConfigPath string
	Log        *slog.Logger
	Runner     runner.Runner
	// Accel overrides the config's accel ("auto", "kvm", "tcg") when set.
	Accel string
	// Ready, when set, is called once the socket accepts requests.
	Ready func()
}

// Run starts the daemon and serves until ctx is canceled (SIGTERM or
// SIGINT in the real binary), then shuts down cleanly: in-flight
// operations are canceled and undone, the socket is removed.
func Run(ctx context.Context, o Options) (err error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if o.Runner == nil {
		o.Runner = runner.Exec{}
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	if o.Accel != "" {
		cfg.Accel = o.Accel
	}
	mode, err := accel.ParseMode(cfg.Accel)
	if err != nil {
		return fmt.Errorf("--accel: %w", err)
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return err
	}
	// State is the daemon's alone: VM disks hold guests' SSH host keys,
	// consoles what guests print. Whatever the daemon and its helpers
	// create is private unless made otherwise on purpose (the socket).
	syscall.Umask(0o077)
	lay := layout.Layout{Root: stateDir}
	for _, d := range lay.Dirs() {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
	}
	if err := layout.MakePrivate(stateDir); err != nil {
		return fmt.Errorf("make the state directory private: %w", err)
	}
	lock, err := acquireLock(lay.Lock(), stateDir)
	if err != nil {
		return err
	}
	defer lock.release()

	st, err := store.Open(ctx, lay.DB())
	if err != nil {
		return err
	}
	defer st.Close()

	dl := download.Client{Limit: cfg.MaxDownloadBytes}
	reg := &registry.Client{Mirrors: cfg.RegistryMirrors, Insecure: cfg.InsecureRegistries}
	agentPath, err := findAgent(cfg.AgentPath)
	if err != nil {
		return err
	}
	if agentPath == "" {
		log.Warn("no banger-agent binary found (next to banger, on PATH, or agent_path in the config): VMs cannot boot kernels that need banger's initramfs")
	}
	key, err := sshkey.LoadOrCreate(lay.SSHKey(), "banger-daemon")
	if err != nil {
		return err
	}
	driver := qemu.New(cfg.VMMUser, qemu.UIDRange{From: cfg.VMMUIDBase, Count: cfg.VMMUIDCount}, mode, filepath.Join(lay.Cache(), "accel.json"))
	driver.DiskCache = cfg.DiskCache
	driver.Runner = o.Runner
	driver.UserNet = cfg.UserNet
	// The accelerator is proven in the background: the API answers at
	// once, and the first VM start waits for the verdict. A VMM that
	// could not drop root is not started even to probe.
	if err := driver.CannotStart(); err != nil {
		log.Error("no VM can start", "err", err)
	} else {
		driver.Accelerator.Start(ctx)
	}
	go func() {
		if driver.CannotStart() != nil {
			return
		}
		c, err := driver.Accelerator.Get(ctx)
		if ctx.Err() != nil {
			return
		}
		args := []any{"accel", c.String(), "cpu", c.CPU, "mode", mode, "kvm", c.KVM, "cached", c.Cached, "probe_took", time.Duration(c.ProbeTook).Round(time.Millisecond)}
		if err != nil {
			log.Error("no VM can start: the configured accelerator does not work", append(args, "err", err)...)
			return
		}
		log.Info("accelerator chosen", args...)
	}()
	var templates template.Dir
	if cfg.Templates {
		templates = template.Dir(lay.Templates())
		if swept := templates.Sweep(); len(swept) > 0 {
			log.Info("removed unfinished templates", "dirs", swept)
		}
	}
	if swept := template.Dir(lay.Snapshots()).Sweep(); len(swept) > 0 {
		log.Info("removed unfinished snapshots", "dirs", swept)
	}
	lazy := &lazyImages{}
	disks := guestdisk.Reader{Sandbox: sandbox.Spec{
		// The uid just below the VMMs' range: no account's, no VMM's.
		UID: cfg.VMMUIDBase - 1, GID: cfg.VMMUIDBase - 1,
		Memory: 2 << 30, Timeout: 30 * time.Minute,
	}}
	work := workspace.New(workspace.Deps{
		Runner: o.Runner, Staging: lay.Staging(), MaxSeedBytes: cfg.MaxSeedBytes,
		DiskBytes: cfg.DefaultDiskBytes(), Log: log.With("service", "workspace"),
		Disks: disks, MaxPullBytes: cfg.MaxPullBytes, MaxPullEntries: cfg.MaxPullEntries,
	})
	work.Recover()
	uploads := &upload.Store{Dir: lay.Staging(), MaxBytes: cfg.MaxUnpackedBytes, Log: log.With("service", "upload")}
	uploads.Recover()
	var hostNet vm.HostNet
	netWhy := ""
	netCfg := hostnet.Config{Bridge: cfg.BridgeName, Subnet: cfg.Subnet(), Upstream: cfg.Upstream(), Open: cfg.LAN()}
	if err := hostnet.Check(netCfg); err != nil {
		netWhy = err.Error()
		if cfg.DefaultNetwork == "bridge" {
			log.Error("default_network is bridge, but bridge mode cannot run here", "err", err)
		}
	} else {
		hn := hostnet.New(hostnet.Deps{Store: st, Log: log.With("service", "hostnet"), Config: netCfg})
		defer hn.Close()
		hostNet = hn
	}
	guard, guardState := startGuard(ctx, cfg, netCfg, st, log.With("service", "guard"))
	var vmGuard vm.Guard
	if guard != nil {
		vmGuard = guard
	}
	vms := vm.New(vm.Deps{
		Work:              work,
		GuestDisks:        disks,
		MaxPromoteEntries: cfg.MaxPullEntries,
		Store:             st,
		Images:            lazy,
		Runner:            o.Runner,
		Driver:            driver,
		Layout:            lay,
		Net:               hostNet,
		NetWhy:            netWhy,
		Guard:             vmGuard,
		GuardWhy:          guardState,
		Agent:             agentPath,
		Key:               key,
		Templates:         templates,
		Quota:             quota(cfg),
		Defaults: vm.Defaults{
			Image: cfg.DefaultImageName, Network: cfg.DefaultNetwork, CPUs: cfg.DefaultCPUs, MemoryMB: cfg.DefaultMemoryMiB, DiskBytes: cfg.DefaultDiskBytes(),
			ReadyTimeout: cfg.ReadyTimeout.Duration, StopTimeout: cfg.StopTimeout.Duration,
		},
		Log: log.With("service", "vm"),
	})
	kernels := kernel.New(kernel.Deps{
		Store:  st,
		Users:  vms,
		Runner: o.Runner,
		Catalog: func(ctx context.Context) ([]api.KernelCatalogEntry, error) {
			return kernelcat.Load(ctx, cfg.KernelCatalogs, dl.Bytes)
		},
		Downloader:  dl,
		Images:      reg,
		Layout:      lay,
		MaxUnpacked: cfg.MaxUnpackedBytes,
		Uploads:     uploads,
		Log:         log.With("service", "kernel"),
	})
	if err := kernels.Recover(ctx); err != nil {
		return err
	}
	keys, err := readKeys(cfg.SSHPublicKeys)
	if err != nil {
		return err
	}
	images := image.New(image.Deps{
		Store:    st,
		Users:    vms,
		Kernels:  kernels,
		Registry: reg,
		Catalog: func(ctx context.Context) ([]api.ImageCatalogEntry, error) {
			return imagecat.Load(ctx, cfg.ImageCatalogs, dl.Bytes)
		},
		Downloader:    dl,
		Runner:        o.Runner,
		Layout:        lay,
		DefaultKernel: cfg.DefaultKernelName,
		MaxUnpacked:   cfg.MaxUnpackedBytes,
		DiskSize:      cfg.DefaultDiskBytes(),
		Finalize:      image.Finalize{AuthorizedKeys: keys, Agent: agentPath},
		Uploads:       uploads,
		Log:           log.With("service", "image"),
	})
	if err := images.Recover(ctx); err != nil {
		return err
	}
	lazy.Service = images
	vms.SetKernels(kernels)
	if err := vms.Recover(ctx); err != nil {
		return err
	}
	log.Info("vmm driver", "driver", driver.Name(), "runs_as", driver.RunAs)
	if err := driver.CannotStart(); err != nil {
		log.Error("no VM can start", "err", err)
	}

	opsCtx, cancelOps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOps()
	ops := operation.NewRegistry(opsCtx)
	started := time.Now().UTC()
	srv := server.New(server.Deps{
		Kernels:    kernels,
		Images:     images,
		VMs:        vms,
		Operations: ops,
		Seeds:      work,
		Uploads:    uploads,
		Version:    version.Info(),
		Log:        log.With("service", "api"),
		Status: func(ctx context.Context) (api.Status, error) {
			s := api.Status{Daemon: version.Info(), APIVersion: api.Prefix[1:], PID: os.Getpid(), StateDir: stateDir, StartedAt: started}
			ks, err := kernels.Count(ctx)
			if err != nil {
				return s, err
			}
			s.Kernels = ks
			if s.Images, err = images.Count(ctx); err != nil {
				return s, err
			}
			if s.VMs, err = vms.Count(ctx); err != nil {
				return s, err
			}
			s.Operations = len(ops.List(ctx))
			s.Accel = driver.Accelerator.Status()
			s.Network = driver.Network()
			s.DefaultNetwork = cfg.DefaultNetwork
			s.Guard = guardState
			s.Bridge = fmt.Sprintf("%s, %s", netCfg.Bridge, netCfg.Subnet)
			if netWhy != "" {
				s.Bridge = "unavailable: " + netWhy
			}
			s.MaxSeedBytes = cfg.MaxSeedBytes
			return s, nil
		},
		Reprobe: func(ctx context.Context) api.Accel {
			if err := driver.CannotStart(); err != nil {
				return accel.Choice{}.API(err)
			}
			c, err := driver.Accelerator.Reprobe(ctx)
			log.Info("accelerator probed again", "accel", c.String(), "err", err)
			return c.API(err)
		},
	})

	ln, err := listen(o.Socket, cfg.SocketGroup, log)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ConnContext: peer.ConnContext}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("banger daemon ready", "socket", o.Socket, "state_dir", stateDir, "version", version.Info().Version, "pid", os.Getpid())
	if o.Ready != nil {
		o.Ready()
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-serveErr:
		log.Error("API server stopped", "err", err)
	}
	// Stop taking requests, then cancel what is still running: every
	// operation undoes its partial work before it returns.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cancelOps()
	hs.Shutdown(sctx)
	waited := make(chan struct{})
	go func() { ops.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		log.Warn("operations still running at exit; their leftovers are removed at next start")
	}
	os.Remove(o.Socket)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// listen opens the API socket, refusing to steal one another daemon is
// serving and replacing one a dead daemon left behind.
func listen(path, group string, log *slog.Logger) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
		// The group must reach the socket inside; the socket's own mode
		// keeps others out.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use by another running daemon: stop it, or choose another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// Create the socket with no permissions for others, then open it to
	// the group: there is no moment when anyone else can connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if group != "" {
		if g, err := user.LookupGroup(group); err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			if err := os.Chown(path, -1, gid); err != nil {
				log.Warn("cannot give the socket to its group", "group", group, "err", err)
			}
		} else {
			log.Debug("socket group does not exist; socket stays owner-only", "group", group)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// readKeys reads the public key files the config names.
func readKeys(paths []string) ([]string, error) {
	var keys []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("ssh_public_keys: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				keys = append(keys, line)
			}
		}
	}
	return keys, nil
}

// startGuard keeps user-mode guests off the host (see hostnet.Guard) and
// says how it stands, for status; the guard is nil where it is off. The
// table outlives the daemon, as the VMs it guards do.
func startGuard(ctx context.Context, cfg config.Config, net hostnet.Config, st *store.Store, log *slog.Logger) (*hostnet.Guard, string) {
	off := !cfg.GuardHost || cfg.UserNet == "slirp" || os.Geteuid() != 0 || cfg.VMMUser != "auto"
	if off && os.Geteuid() == 0 {
		// A table an earlier daemon wrote would keep guarding what this
		// configuration opens.
		if err := hostnet.DropGuard(); err != nil {
			log.Warn("remove the guard table", "err", err)
		}
	}
	switch {
	case !cfg.GuardHost:
		return nil, "off (guard_host = false): user-mode guests can reach this host's addresses and LAN"
	case cfg.UserNet == "slirp":
		return nil, "off for user mode (user_net = \"slirp\" opens this host's loopback to guests); bridge mode guarded"
	case os.Geteuid() != 0 || cfg.VMMUser != "auto":
		return nil, "off for user mode: VMMs need uids of their own (a root daemon, vmm_user = \"auto\"); bridge mode guarded"
	}
	g := &hostnet.Guard{
		UIDFrom: uint32(cfg.VMMUIDBase), UIDCount: uint32(cfg.VMMUIDCount),
		Open: net.Open, Exclude: net.Subnet, Resolv: "/etc/resolv.conf",
		Store: st, Upstream: net.Upstream, Log: log,
	}
	if err := g.Apply(); err != nil {
		log.Error("guests are not kept off the host", "err", err)
		return nil, "FAILED: " + err.Error()
	}
	go g.Watch(ctx)
	return g, "on: guests reach neither this host's addresses, link-local, nor its LAN (guest_lan opens parts of it); --egress holds user-mode VMs too"
}

// quota is the config's per-user bounds, a share of the host's memory
// made MiB.
func quota(cfg config.Config) vm.Quota {
	var si unix.Sysinfo_t
	var hostMiB int64
	if unix.Sysinfo(&si) == nil {
		hostMiB = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	return vm.Quota{VMs: cfg.MaxVMsPerUser, CPUs: cfg.MaxCPUsPerUser, MemoryMB: int(cfg.MemoryPerUserMiB(hostMiB))}
}
