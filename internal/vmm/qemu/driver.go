package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/errdefs"
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
	// Runner runs qemu-img for disk files (nil: the real one).
	Runner runner.Runner
	// runAsErr refuses every start when the VMM cannot drop root.
	runAsErr error
	// perVM: each VMM gets a uid of its own from uids, so that one VMM
	// broken out of its guest reaches no other VM's process or files.
	perVM bool
	uids  UIDRange
	// wantUID is the uid a started VMM must run as (-1: not checked).
	wantUID int

	mu      sync.Mutex
	pending map[int]bool // uids handed to VMMs still starting; guarded by mu
}

// PerVMUser is the vmm_user that gives each VM a uid of its own.
const PerVMUser = "auto"

// UIDRange is the uids banger reserves for VMMs: From to From+Count-1.
type UIDRange struct{ From, Count int }

var _ vmm.Driver = (*Driver)(nil)

// New returns a driver whose accelerator follows mode; the probe's result
// is cached in cache ("" for none). When the caller is root, qemu drops
// root after start-up: to a uid of its own from uids when runAs is
// PerVMUser, else to the user runAs names; if that user does not exist,
// or is root, no VM starts (a VMM silently left as root would be the
// worst failure).
func New(runAs string, uids UIDRange, mode accel.Mode, cache string) *Driver {
	d := &Driver{Binary: Binary, uids: uids, wantUID: -1, pending: map[int]bool{}}
	if runAs != "" && os.Geteuid() == 0 {
		switch u, err := user.Lookup(runAs); {
		case runAs == PerVMUser:
			d.perVM = true
		case err != nil:
			d.runAsErr = fmt.Errorf("vmm_user %q does not exist, and qemu must not keep root: create it (useradd --system --no-create-home --shell /usr/sbin/nologin %s), set vmm_user = %q for a uid per VM, or name another unprivileged user in the config: %w", runAs, runAs, PerVMUser, errdefs.ErrUnavailable)
		case u.Uid == "0":
			d.runAsErr = fmt.Errorf("vmm_user %q is root: qemu must not keep root: %w", runAs, errdefs.ErrInvalid)
		default:
			d.RunAs = runAs
			d.wantUID, _ = strconv.Atoi(u.Uid)
		}
	}
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
				os.MkdirAll(workDir, 0o700)
			}
			// The probe keeps root, under the seccomp filter: it runs
			// banger's own guest for a second, and it must die with the
			// daemon (a guest crawling on a broken KVM spins a core for
			// good), which the parent-death signal ensures only as long
			// as qemu does not change uid (the kernel clears it then).
			return Probe(ctx, d.bin(), vmm.Accel{Name: "kvm", CPU: cpu}, ProbeDeadline, workDir, Options{})
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
	return vmm.Features{UserNetwork: true, Overlays: true, Snapshots: true}
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

// GuestParams implements vmm.Driver: the accelerator's words.
func (d *Driver) GuestParams(a vmm.Accel) []string {
	tsc := 0
	if !a.KVM() {
		tsc = HostTSCKHz()
	}
	return GuestParams(a, tsc)
}

// NetParams implements vmm.Driver: the guest's user-mode network address.
// Under passt eth0 takes frames as large as passt sends (65520 bytes): a
// guest's download ran at 46.5 MiB/s against 18.6 at 1500 (bench/net.sh).
func (d *Driver) NetParams(n vmm.Network) []string {
	if n.None || n.Tap != "" {
		return nil
	}
	p := []string{guestproto.ParamIP + "=" + GuestAddr, guestproto.ParamGateway + "=" + GuestGateway}
	if mode, _, err := d.NetMode(); err == nil && mode == NetPasst && !n.Isolated {
		p = append(p, fmt.Sprintf("%s=%d", guestproto.ParamMTU, PasstMTU))
	}
	return p
}

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
	l := &launch{cfg: cfg, o: d.Options, want: d.wantUID, stateFD: -1}
	defer l.close()
	if err := d.prepare(ctx, l); err != nil {
		return vmm.Process{}, err
	}
	cmd, exited, err := l.spawn(bin, path)
	if err != nil {
		return vmm.Process{}, err
	}
	proc, err := vmm.ProcessOf(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		return vmm.Process{}, fmt.Errorf("qemu exited at once: %s", readLog(cfg.Log))
	}
	if err := l.waitReady(ctx, cmd, proc, exited); err != nil {
		return vmm.Process{}, err
	}
	l.started = true
	return proc, nil
}

// launch is one start of qemu: the options and descriptors it is given,
// and what Start undoes when it returns.
type launch struct {
	cfg  vmm.Config
	o    Options
	want int // the uid qemu and passt must run as (-1: not checked)
	log  *os.File
	net  *passt // nil unless the VM's network is passt's
	// extra are the descriptors qemu inherits, from 3 on.
	extra []*os.File
	// stateFD is qemu's descriptor of the saved state to restore (-1:
	// none).
	stateFD int
	// started is set once qemu runs as it must: passt is then the VM's,
	// else spawn's undo kills it.
	started bool
	// undo is run by close, last first.
	undo []func()
}

// close releases what the start held.
func (l *launch) close() {
	for i := len(l.undo) - 1; i >= 0; i-- {
		l.undo[i]()
	}
}

// prepare opens qemu's log, picks the uid it drops to, sets up its
// network and opens the files it inherits.
func (d *Driver) prepare(ctx context.Context, l *launch) error {
	log, err := os.OpenFile(l.cfg.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	l.log = log
	l.undo = append(l.undo, func() { log.Close() })
	os.Remove(l.cfg.Control)
	if d.perVM {
		uid, release, err := d.allocUID()
		if err != nil {
			return err
		}
		// Held until qemu has dropped to it: then /proc shows it in use.
		l.undo = append(l.undo, release)
		l.o.RunAs, l.want = fmt.Sprintf("%d:%d", uid, uid), uid
	}
	tap, err := d.network(ctx, l)
	if err != nil {
		return err
	}
	return l.openFiles(tap)
}

// network sets qemu's network up: a tap opened here (returned), passt
// started, or qemu's own user network.
func (d *Driver) network(ctx context.Context, l *launch) (tap *os.File, err error) {
	switch n := l.cfg.Network; {
	case n.None:
	case n.Tap != "":
		// Opened here, as root, and inherited: qemu needs no privilege
		// over the tap, and drops root before it would open one.
		if tap, err = openTap(n.Tap); err != nil {
			return nil, err
		}
		l.undo = append(l.undo, func() { tap.Close() })
	case n.Isolated:
		l.o.UserNet = NetIsolated
	default:
		if l.o.UserNet, _, err = d.NetMode(); err != nil {
			return nil, err
		}
		if l.o.UserNet == NetPasst {
			// Before qemu, so that a published port another program
			// holds fails the start here, with passt's words.
			net, err := startPasst(ctx, l.cfg, l.o.RunAs, l.log)
			if err != nil {
				return nil, err
			}
			l.net = net
			l.undo = append(l.undo, func() { net.vmEnd.Close() })
		}
	}
	return tap, nil
}

// inherit hands f to qemu and returns the descriptor qemu sees it as.
func (l *launch) inherit(f *os.File) int {
	l.extra = append(l.extra, f)
	return 2 + len(l.extra)
}

// openFor opens path for qemu to inherit.
func (l *launch) openFor(path string, flag int) (int, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return -1, err
	}
	l.undo = append(l.undo, func() { f.Close() })
	return l.inherit(f), nil
}

// openFiles gives qemu its descriptors: passt's end first (the netdev
// names fd 3), the tap, the saved state, and every writable disk.
func (l *launch) openFiles(tap *os.File) error {
	if l.net != nil {
		l.inherit(l.net.vmEnd)
	}
	if tap != nil {
		l.o.TapFD = l.inherit(tap)
	}
	if l.cfg.Restore != "" {
		fd, err := l.openFor(l.cfg.Restore, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("saved state: %w", err)
		}
		l.stateFD = fd
	}
	// Every writable disk as a descriptor set: a migration (a template
	// saved, a resume, a snapshot of a running VM) hands disks over and
	// qemu reopens them then, after it dropped root.
	l.o.DiskFDs = map[string][2]int{}
	for _, d := range l.cfg.Disks {
		if d.ReadOnly {
			continue
		}
		rw, err := l.openFor(d.Path, os.O_RDWR)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
		ro, err := l.openFor(d.Path, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
		l.o.DiskFDs[d.ID] = [2]int{rw, ro}
	}
	return nil
}

// spawn starts qemu (bin, found at path) detached, in a session of its
// own. exited reports its end while this daemon runs.
func (l *launch) spawn(bin, path string) (cmd *exec.Cmd, exited <-chan error, err error) {
	// Not exec.CommandContext: the VMM must outlive this request.
	cmd = exec.Command(path, Args(l.cfg, l.o)...)
	cmd.Stdout, cmd.Stderr = l.log, l.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.ExtraFiles = l.extra
	l.undo = append(l.undo, func() {
		if l.net != nil && !l.started {
			l.net.kill()
		}
	})
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ch := make(chan error, 1)
	// Reap qemu when it exits while this daemon runs; after a daemon
	// restart it is init's child and init reaps it.
	go func() { ch <- cmd.Wait() }()
	return cmd, ch, nil
}

// waitReady waits for qemu to answer on QMP, checks it dropped root, and
// restores the saved state if there is one. qemu is killed if it fails.
func (l *launch) waitReady(ctx context.Context, cmd *exec.Cmd, proc vmm.Process, exited <-chan error) error {
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := QMP(qctx, l.cfg.Control, "query-status")
		cancel()
		if err == nil {
			if err := l.ready(ctx, proc, exited); err != nil {
				cmd.Process.Kill()
				return err
			}
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("qemu exited (%v): %s", werr, readLog(l.cfg.Log))
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ready finishes a start once qemu answers on QMP.
func (l *launch) ready(ctx context.Context, proc vmm.Process, exited <-chan error) error {
	// QMP answers from qemu's main loop, after -runas: check the drop
	// happened rather than trust it.
	pids := map[string]int{"qemu": proc.PID}
	if l.net != nil {
		pids["passt"] = l.net.cmd.Process.Pid
	}
	for name, pid := range pids {
		if uid, err := vmm.UID(pid); l.want >= 0 && (err != nil || uid != l.want) {
			return fmt.Errorf("%s did not drop root to uid %d (it runs as %d, %v): refusing to run a VM as root: %w", name, l.want, uid, err, errdefs.ErrUnavailable)
		}
	}
	if l.stateFD >= 0 {
		if err := resume(ctx, l.cfg, l.stateFD, exited); err != nil {
			return fmt.Errorf("restore %s: %w", l.cfg.Restore, err)
		}
	}
	return nil
}

// ignoreShared makes a migration leave RAM that lives in a shared file
// out of the stream: it is the memory file itself. Both ends need it.
var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// resume loads the saved state from the VMM's file descriptor fd, runs the
// guest, and tells it the size of each raw disk, which may have grown
// since the state was saved (a work disk in the place of a template's
// empty one).
func resume(ctx context.Context, cfg vmm.Config, fd int, exited <-chan error) error {
	m, err := dialMonitor(ctx, cfg.Control)
	if err != nil {
		return err
	}
	defer m.Close()
	// RAM left out of the stream is a template's memory file; a fork's
	// stream holds all of it.
	if mem := cfg.Memory; mem != nil && mem.Path != "" {
		if _, err := m.Exec("migrate-set-capabilities", ignoreShared); err != nil {
			return err
		}
	}
	if _, err := m.Exec("migrate-incoming", map[string]any{"uri": fmt.Sprintf("fd:%d", fd)}); err != nil {
		return err
	}
	for {
		ret, err := m.Exec("query-status", nil)
		if err != nil {
			return err
		}
		var st struct{ Status string }
		json.Unmarshal(ret, &st)
		if st.Status != "inmigrate" {
			break
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("qemu exited (%v): %s", werr, readLog(cfg.Log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := m.Exec("cont", nil); err != nil {
		return err
	}
	for _, d := range cfg.Disks {
		if d.Format != "raw" || d.ReadOnly {
			continue
		}
		st, err := os.Stat(d.Path)
		if err != nil {
			return err
		}
		// Resizing to the file's own size changes nothing on disk; it
		// makes the virtio device announce its capacity again.
		if _, err := m.Exec("block_resize", map[string]any{"device": d.ID, "size": st.Size()}); err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
	}
	return nil
}

// Save implements vmm.Driver: the guest paused, its device state written
// through a descriptor handed over QMP (qemu may not open files or run
// programs under its sandbox), then the state and memory files synced so
// that a crash of the host leaves either a whole template or none.
func (d *Driver) Save(ctx context.Context, cfg vmm.Config, state string) error {
	if cfg.Memory == nil || !cfg.Memory.Shared {
		return fmt.Errorf("save vm %s: its memory is not a shared file: %w", cfg.Name, errdefs.ErrInvalid)
	}
	f, err := os.OpenFile(state, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("save vm %s: %w", cfg.Name, err)
	}
	defer f.Close()
	m, err := dialMonitor(ctx, cfg.Control)
	if err != nil {
		return fmt.Errorf("save vm %s: %w", cfg.Name, err)
	}
	defer m.Close()
	if err := m.execAll([]qmpCommand{
		{"stop", nil, nil},
		{"migrate-set-capabilities", ignoreShared, nil},
		{"getfd", map[string]any{"fdname": "state"}, f},
		{"migrate", map[string]any{"uri": "fd:state"}, nil},
	}); err != nil {
		return fmt.Errorf("save vm %s: %w", cfg.Name, err)
	}
	if _, err := waitMigration(ctx, m, cfg, nil); err != nil {
		return fmt.Errorf("save vm %s: %w", cfg.Name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save vm %s: sync state: %w", cfg.Name, err)
	}
	mem, err := os.Open(cfg.Memory.Path)
	if err != nil {
		return fmt.Errorf("save vm %s: %w", cfg.Name, err)
	}
	defer mem.Close()
	if err := mem.Sync(); err != nil {
		return fmt.Errorf("save vm %s: sync memory: %w", cfg.Name, err)
	}
	return nil
}

// Snapshot implements vmm.Driver with a migration to a file of the
// paused guest; pause-before-switchover holds it before qemu lets go of
// its disks, which are copied then; then the migration ends and the
// guest runs on.
//
// The guest is paused for the whole copy of its RAM, not only the last
// pass: under TCG with more than one vCPU, a live migration's dirty
// tracking missed writes, and about one fork in five woke with corrupt
// kernel memory (a NULL RCU callback, a panic within a second). Paused,
// the copy is one pass at the file's speed.
func (d *Driver) Snapshot(ctx context.Context, cfg vmm.Config, state string, copyDisks func() error) (time.Duration, error) {
	f, err := os.OpenFile(state, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("snapshot vm %s: %w", cfg.Name, err)
	}
	defer f.Close()
	m, err := dialMonitor(ctx, cfg.Control)
	if err != nil {
		return 0, fmt.Errorf("snapshot vm %s: %w", cfg.Name, err)
	}
	defer m.Close()
	caps := func(on bool) map[string]any {
		return map[string]any{"capabilities": []map[string]any{
			{"capability": "pause-before-switchover", "state": on}, {"capability": "x-ignore-shared", "state": false}}}
	}
	var paused time.Time
	finish := func(err error) (time.Duration, error) {
		if err != nil {
			m.Exec("migrate_cancel", nil)
		}
		// The guest runs on whatever happened: a finished migration
		// leaves it paused (postmigrate), a failed one may.
		if ret, qerr := m.Exec("query-status", nil); qerr == nil {
			var st struct{ Running bool }
			json.Unmarshal(ret, &st)
			if !st.Running {
				if _, cerr := m.Exec("cont", nil); cerr != nil && err == nil {
					err = cerr
				}
			}
		}
		m.Exec("migrate-set-capabilities", caps(false))
		if err != nil {
			return 0, fmt.Errorf("snapshot vm %s: %w", cfg.Name, err)
		}
		if paused.IsZero() {
			return 0, nil
		}
		return time.Since(paused), nil
	}
	if err := m.execAll([]qmpCommand{
		{"migrate-set-capabilities", caps(true), nil},
		// qemu's default is 128 MiB/s, for a network; this is a file.
		{"migrate-set-parameters", map[string]any{"max-bandwidth": int64(8) << 30}, nil},
		{"getfd", map[string]any{"fdname": "snapshot"}, f},
	}); err != nil {
		return finish(err)
	}
	paused = time.Now()
	if err := m.execAll([]qmpCommand{
		{"stop", nil, nil},
		{"migrate", map[string]any{"uri": "fd:snapshot"}, nil},
	}); err != nil {
		return finish(err)
	}
	paused, err = waitMigration(ctx, m, cfg, func() error {
		if err := copyDisks(); err != nil {
			return err
		}
		_, err := m.Exec("migrate-continue", map[string]any{"state": "pre-switchover"})
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	return finish(err)
}

// waitMigration polls an outgoing migration until it completes, calling
// atSwitchover once if it stops before the switch-over (the guest then
// paused, its disks still qemu's), and returns when that was.
func waitMigration(ctx context.Context, m *monitor, cfg vmm.Config, atSwitchover func() error) (time.Time, error) {
	var paused time.Time
	for {
		ret, err := m.Exec("query-migrate", nil)
		if err != nil {
			return paused, err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		json.Unmarshal(ret, &st)
		switch st.Status {
		case "pre-switchover":
			if atSwitchover != nil && paused.IsZero() {
				paused = time.Now()
				if err := atSwitchover(); err != nil {
					return paused, err
				}
			}
		case "completed":
			return paused, nil
		case "failed", "cancelled":
			return paused, fmt.Errorf("migration %s: %s %s", st.Status, st.ErrorDesc, readLog(cfg.Log))
		}
		select {
		case <-ctx.Done():
			return paused, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// allocUID picks the lowest uid of the range that no process on this host
// runs as and no VMM still starting was given; release hands it back
// once that VMM runs as it (or failed). A VMM started by an earlier
// daemon holds its uid as a process, so none is given twice.
func (d *Driver) allocUID() (uid int, release func(), err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	used, err := uidsInUse(d.uids)
	if err != nil {
		return 0, nil, err
	}
	for uid := d.uids.From; uid < d.uids.From+d.uids.Count; uid++ {
		if !used[uid] && !d.pending[uid] {
			d.pending[uid] = true
			return uid, func() {
				d.mu.Lock()
				delete(d.pending, uid)
				d.mu.Unlock()
			}, nil
		}
	}
	return 0, nil, fmt.Errorf("all %d VMM uids from %d are in use: raise vmm_uid_count: %w", d.uids.Count, d.uids.From, errdefs.ErrUnavailable)
}

// uidsInUse returns the uids of r that processes run as.
func uidsInUse(r UIDRange) (map[int]bool, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	used := map[int]bool{}
	for _, e := range dirs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if uid, err := vmm.UID(pid); err == nil && uid >= r.From && uid < r.From+r.Count {
			used[uid] = true
		}
	}
	return used, nil
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
