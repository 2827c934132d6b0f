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
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/vm"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
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
// operations are canceled and undone, the socket is removed. It is four
// steps: load the configuration, open the state, build the services,
// serve.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Runner == nil {
		o.Runner = runner.Exec{}
	}
	cfg, mode, err := load(o)
	if err != nil {
		return err
	}
	st, err := openState(ctx, o.StateDir)
	if err != nil {
		return err
	}
	defer st.close()
	d, err := build(ctx, o, cfg, mode, st)
	if err != nil {
		return err
	}
	defer d.close()
	return d.serve(ctx, o)
}

// load reads the configuration, with the flags' overrides.
func load(o Options) (config.Config, accel.Mode, error) {
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return cfg, "", err
	}
	if o.Accel != "" {
		cfg.Accel = o.Accel
	}
	mode, err := accel.ParseMode(cfg.Accel)
	if err != nil {
		return cfg, "", fmt.Errorf("--accel: %w", err)
	}
	return cfg, mode, nil
}

// state is the daemon's state directory, held: its layout, its lock and
// its database.
type state struct {
	dir  string
	lay  layout.Layout
	lock *stateLock
	db   *store.Store
}

// openState makes the state directory private, takes its lock and opens
// the database.
func openState(ctx context.Context, dir string) (*state, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// State is the daemon's alone: VM disks hold guests' SSH host keys,
	// consoles what guests print. Whatever the daemon and its helpers
	// create is private unless made otherwise on purpose (the socket).
	syscall.Umask(0o077)
	lay := layout.Layout{Root: dir}
	for _, d := range lay.Dirs() {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	if err := layout.MakePrivate(dir); err != nil {
		return nil, fmt.Errorf("make the state directory private: %w", err)
	}
	lock, err := acquireLock(lay.Lock(), dir)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, lay.DB())
	if err != nil {
		lock.release()
		return nil, err
	}
	return &state{dir: dir, lay: lay, lock: lock, db: db}, nil
}

func (st *state) close() {
	st.db.Close()
	st.lock.release()
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
func startGuard(ctx context.Context, cfg config.Config, net hostnet.Config, st *store.Store, rec hostnet.Recorder, log *slog.Logger) (*hostnet.Guard, string) {
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
		Store: st, Upstream: net.Upstream, Log: log, Activity: rec,
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
