// Package vm is the VMService: VMs created from an image and a kernel,
// booted through a VMM driver, watched across daemon restarts, stopped by
// asking their guest agent first.
//
// A VM's record in the store is the truth about what exists; whether it
// runs is asked of the system each time (is its VMM process alive?), so a
// VMM killed by hand, or a daemon that restarted, never leaves a stale
// "running".
package vm

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/kit/keyedlock"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/service/vm/lent"
	"github.com/banger-dev/banger/internal/service/vm/quota"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/service/vm/vmnet"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Images is what VMs need of the image service.
type Images interface {
	// Ensure returns the image, pulling it (and its kernel) when needed.
	Ensure(ctx context.Context, name string, p operation.Progress) (api.Image, error)
	Get(ctx context.Context, name string) (api.Image, error)
	// Adopt publishes an image whose root disk fill writes at dst.
	Adopt(ctx context.Context, name, kernel, source string, fill func(ctx context.Context, dst string) error, p operation.Progress) (api.Image, error)
}

// Kernels is what VMs need of the kernel service.
type Kernels interface {
	Ensure(ctx context.Context, name string, p operation.Progress) (api.Kernel, error)
}

// Store is what VMs need of the store.
type Store interface {
	InsertVM(ctx context.Context, v store.VM) error
	UpdateVM(ctx context.Context, v store.VM) error
	DeleteVM(ctx context.Context, name string) error
	GetVM(ctx context.Context, name string) (store.VM, error)
	ListVMs(ctx context.Context) ([]store.VM, error)
	VMsUsing(ctx context.Context, column, name string) ([]string, error)
}

// WorkDisks is what VMs need of the workspace service.
type WorkDisks interface {
	// Claim moves a staged seed's disk into a VM's directory.
	Claim(ctx context.Context, id, vmDir string) (api.Work, error)
	// Discard drops a staged seed no VM will claim.
	Discard(ctx context.Context, id string)
}

// Quota bounds each user's VMs (see quota.Limits).
type Quota = quota.Limits

// Guard and HostNet are what VMs need of the host network (see vmnet).
type (
	Guard   = vmnet.Guard
	HostNet = vmnet.HostNet
)

// Defaults are the config's VM defaults.
type Defaults struct {
	Image string
	// Network is the network mode of a VM created without one.
	Network  string
	CPUs     int
	MemoryMB int
	// DiskBytes is the root disk size without --disk (default_disk).
	DiskBytes    int64
	ReadyTimeout time.Duration
	StopTimeout  time.Duration
}

// Deps are the service's dependencies.
type Deps struct {
	Store   Store
	Images  Images
	Kernels Kernels
	Work    WorkDisks
	Driver  vmm.Driver
	Runner  runner.Runner
	Layout  layout.Layout
	// Net is the host network service; nil where bridge mode cannot run
	// (then bridge-mode VMs are refused with why).
	Net HostNet
	// NetWhy says why Net is nil.
	NetWhy string
	// Guard holds user-mode VMs to egress policies; nil where the guard
	// is off (GuardWhy says why), and then only bridge mode takes one.
	Guard    Guard
	GuardWhy string
	// Agent is the guest agent binary, built into each kernel's
	// initramfs; "" when none was found (then only images that carry the
	// agent boot, with kernels that need no initramfs).
	Agent string
	// Key is the daemon's own SSH key, which every guest accepts.
	Key ssh.Signer
	// Templates holds the templates VMs resume from; "" boots every VM.
	Templates template.Dir
	// Activity keeps each VM's activity record; nil keeps none.
	Activity Activity
	Defaults Defaults
	// Quota bounds each user's VMs (max_*_per_user).
	Quota Quota
	// Modules gives guests their kernel's modules (a read-only disk
	// built once per kernel); ModulesUID runs depmod for it.
	Modules    bool
	ModulesUID int
	Log        *slog.Logger
}

// Service manages VMs.
type Service struct {
	d     Deps
	locks keyedlock.Locks // per VM name
	boot  keyedlock.Locks // per initramfs or base disk being built

	initrds *guestboot.Initrds
	modules *guestboot.ModulesDisks // nil when guests get no modules

	quota *quota.Book

	maker *template.Maker
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Defaults.ReadyTimeout == 0 {
		d.Defaults.ReadyTimeout = 2 * time.Minute
	}
	if d.Defaults.StopTimeout == 0 {
		d.Defaults.StopTimeout = 30 * time.Second
	}
	s := &Service{d: d, initrds: &guestboot.Initrds{Agent: d.Agent, Dir: filepath.Join(d.Layout.Cache(), "initramfs"), Log: d.Log}}
	if d.Modules {
		s.modules = &guestboot.ModulesDisks{Dir: filepath.Join(d.Layout.Cache(), "modules"), Runner: d.Runner, UID: d.ModulesUID, Log: d.Log}
		if swept := s.modules.Sweep(); len(swept) > 0 {
			d.Log.Info("removed unfinished modules disks", "paths", swept)
		}
	}
	s.quota = &quota.Book{Limits: d.Quota, Store: d.Store}
	s.maker = &template.Maker{Dir: d.Templates, Driver: d.Driver, Key: d.Key, RunDir: d.Layout.Run(), Log: d.Log, Base: s.imageBase}
	return s
}

// imageBase is baseFor by image name, for the template maker.
func (s *Service) imageBase(ctx context.Context, image string, size int64, p operation.Progress) (string, error) {
	im, err := s.d.Images.Get(ctx, image)
	if err != nil {
		return "", err
	}
	return s.baseFor(ctx, im, size, p)
}

func (s *Service) lock(ctx context.Context, name string, p operation.Progress) (func(), error) {
	return s.locks.Lock(ctx, name, func() { p.Stage("wait", "another operation on vm %s is running; waiting for it", name) })
}

// process is the VM's VMM process as recorded.
func process(v store.VM) vmm.Process { return vmm.Process{PID: v.PID, StartTime: v.PIDStart} }

// refresh brings a record in line with the system: a VM whose VMM is gone
// is stopped, whoever ended it; one whose agent has said it is ready is
// running, even if the daemon that started it died before it saw so.
func (s *Service) refresh(ctx context.Context, v *store.VM) error {
	if v.State == api.VMStopped {
		return nil
	}
	old := v.State
	if !process(*v).Alive() {
		v.State, v.PID, v.PIDStart = api.VMStopped, 0, 0
		s.net().Detach(ctx, *v)
	} else if v.State == api.VMStarting {
		if con, err := guestboot.ReadFrom(s.console(v.Name), v.ConsoleOffset); err == nil {
			if key, ok := guestboot.ReadyIn(con); ok {
				v.State, v.HostKey = api.VMRunning, key
			}
		}
	}
	if v.State == old {
		return nil
	}
	s.d.Log.Info("vm state changed outside the daemon", "vm", v.Name, "from", old, "to", v.State)
	return s.d.Store.UpdateVM(ctx, *v)
}

// view is the API's picture of a record.
func (s *Service) view(v store.VM) api.VM {
	out := v.VM
	out.Dir = s.d.Layout.VM(v.Name)
	out.Console = s.console(v.Name)
	out.Driver = s.d.Driver.Name()
	if out.State == api.VMStopped {
		out.HostKey, out.PID = "", 0
	}
	if out.Ports == nil {
		out.Ports = []api.PortForward{}
	}
	if out.State != api.VMStopped {
		out.Lent = lent.Names(s.d.Layout.VM(v.Name), v)
	}
	return out
}

func (s *Service) console(name string) string {
	return filepath.Join(s.d.Layout.VM(name), "console.log")
}

func (s *Service) get(ctx context.Context, name string) (store.VM, error) {
	if err := names.Validate("vm", name); err != nil {
		return store.VM{}, err
	}
	v, err := s.d.Store.GetVM(ctx, name)
	if err == nil && !peer.Owns(ctx, v.Owner) {
		// Another user's VM is, to this caller, one that does not exist.
		err = errdefs.ErrNotFound
	}
	if err != nil {
		if errdefs.Code(err) == "not_found" {
			return store.VM{}, s.notFound(ctx, name)
		}
		return v, err
	}
	return v, s.refresh(ctx, &v)
}

// notFound says name is no VM of the caller's, with a hint drawn from its
// own VMs only.
func (s *Service) notFound(ctx context.Context, name string) error {
	var have []string
	if vs, err := s.d.Store.ListVMs(ctx); err == nil {
		for _, v := range vs {
			if peer.Owns(ctx, v.Owner) {
				have = append(have, v.Name)
			}
		}
	}
	return fmt.Errorf("vm %q does not exist: %s: %w", name, names.Hint(name, have, "see `banger vm ls`"), errdefs.ErrNotFound)
}

// Recover runs at daemon start: VMs whose VMM survived the last daemon
// are running again as far as the API goes (nothing else is needed to
// re-attach: the daemon reaches them through their sockets and ports);
// the others are stopped.
func (s *Service) Recover(ctx context.Context) error {
	vs, err := s.d.Store.ListVMs(ctx)
	if err != nil {
		return err
	}
	s.sweep(vs)
	running := 0
	var bridged []hostnet.Spec
	var known []string
	for i := range vs {
		if err := s.refresh(ctx, &vs[i]); err != nil {
			return err
		}
		known = append(known, vs[i].Name)
		if vs[i].State != api.VMStopped {
			running++
			if err := s.net().Police(ctx, vs[i], vs[i].PID); err != nil {
				// Its policy is not held without a restart: said, not hidden.
				s.d.Log.Error("a running vm's egress policy is not enforced: restart it", "vm", vs[i].Name, "err", err)
			}
			if vs[i].Network == api.NetBridge {
				spec, err := vmnet.Spec(vs[i])
				if err != nil {
					return err
				}
				bridged = append(bridged, spec)
			}
		}
	}
	if running > 0 {
		s.d.Log.Info("re-attached to running VMs", "count", running)
	}
	if s.d.Net != nil {
		if err := s.d.Net.Reconcile(ctx, bridged, known); err != nil {
			// The VMs run; what is not restored is logged, and a restart of
			// a VM makes it whole.
			s.d.Log.Error("reconcile the host network", "err", err)
		}
	}
	return nil
}

// sweep removes what a daemon that died in the middle of creating or
// removing a VM left: directories and sockets no record owns.
func (s *Service) sweep(vs []store.VM) {
	names, ids := map[string]bool{}, map[string]bool{}
	for _, v := range vs {
		names[v.Name], ids[v.ID+".sock"] = true, true
	}
	for _, e := range readDir(s.d.Layout.VMs()) {
		if !names[e] {
			s.d.Log.Info("removing the leftovers of an unfinished vm", "dir", e)
			os.RemoveAll(filepath.Join(s.d.Layout.VMs(), e))
		}
	}
	for _, e := range readDir(s.d.Layout.Run()) {
		if !ids[e] {
			os.Remove(filepath.Join(s.d.Layout.Run(), e))
		}
	}
}

func readDir(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// Count returns how many VMs the caller has (root: how many exist).
func (s *Service) Count(ctx context.Context) (int, error) {
	vs, err := s.d.Store.ListVMs(ctx)
	n := 0
	for _, v := range vs {
		if peer.Owns(ctx, v.Owner) {
			n++
		}
	}
	return n, err
}

// List returns the caller's VMs (root's: every VM).
func (s *Service) List(ctx context.Context) ([]api.VM, error) {
	vs, err := s.d.Store.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.VM, 0, len(vs))
	for i := range vs {
		if !peer.Owns(ctx, vs[i].Owner) {
			continue
		}
		if err := s.refresh(ctx, &vs[i]); err != nil {
			return nil, err
		}
		out = append(out, s.view(vs[i]))
	}
	return out, nil
}

// Get returns one VM.
func (s *Service) Get(ctx context.Context, name string) (api.VM, error) {
	v, err := s.get(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	return s.view(v), nil
}

// newID returns a VM's short random ID.
func newID() string { return fmt.Sprintf("%08x", rand.Uint32()) }

// removeFiles deletes a VM's directory and socket.
func (s *Service) removeFiles(v store.VM) error {
	os.Remove(s.controlSocket(v))
	if err := os.RemoveAll(s.d.Layout.VM(v.Name)); err != nil {
		return fmt.Errorf("remove vm %s files: %w", v.Name, err)
	}
	return nil
}

func (s *Service) controlSocket(v store.VM) string {
	return filepath.Join(s.d.Layout.Run(), v.ID+".sock")
}

// Record is the caller's VM's record (another user's is not found), for
// vmwork.
func (s *Service) Record(ctx context.Context, name string) (store.VM, error) { return s.get(ctx, name) }

// LockedRecord is Record under the VM's lock; unlock releases it.
func (s *Service) LockedRecord(ctx context.Context, name string, p operation.Progress) (store.VM, func(), error) {
	return s.lockedGet(ctx, name, p)
}

// View is the record as the API shows it.
func (s *Service) View(v store.VM) api.VM { return s.view(v) }
