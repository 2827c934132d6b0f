package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/service/vm/request"
	"github.com/banger-dev/banger/internal/service/vm/usage"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// fakeDriver "boots" a VM as a sleep process and writes what a guest
// would print on the console. It stands in for qemu so that the service's
// logic (states, failures, cleanup) is tested without booting anything.
type fakeDriver struct {
	mu      sync.Mutex
	console string // printed at start
	exit    bool   // the "VMM" ends at once, as after a guest panic
	started []vmm.Config
	// flattened are the disks Flatten was given; Flatten writes a copy
	// of flattenFrom, when set, else an empty file.
	flattened   []string
	flattenFrom string
	procs       []*exec.Cmd
	byCtl       map[string]*exec.Cmd
	// accelErr is what Accel answers, as under accel = kvm where KVM is
	// broken.
	accelErr error
	// snapshots says the driver takes snapshots (Snapshot itself fails).
	snapshots bool
}

var fakeAccel = vmm.Accel{Name: "tcg", CPU: "max", Reason: "no /dev/kvm"}

func (d *fakeDriver) Name() string           { return "fake" }
func (d *fakeDriver) Features() vmm.Features { return vmm.Features{Snapshots: d.snapshots} }
func (d *fakeDriver) Accel(context.Context) (vmm.Accel, error) {
	if d.accelErr != nil {
		return vmm.Accel{}, d.accelErr
	}
	return fakeAccel, nil
}
func (d *fakeDriver) Network() string                  { return "fake: guests reach nothing" }
func (d *fakeDriver) GuestParams(a vmm.Accel) []string { return []string{"fake=" + a.Name} }
func (d *fakeDriver) NetParams(n vmm.Network) []string {
	if n.Tap != "" {
		return nil
	}
	return []string{"fakenet=user"}
}

func (d *fakeDriver) Start(ctx context.Context, cfg vmm.Config) (vmm.Process, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = append(d.started, cfg)
	f, err := os.OpenFile(cfg.Console, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return vmm.Process{}, err
	}
	f.WriteString(d.console)
	f.Close()
	arg := "300"
	if d.exit {
		arg = "0.2"
	}
	cmd := exec.Command("sleep", arg)
	if err := cmd.Start(); err != nil {
		return vmm.Process{}, err
	}
	go cmd.Wait()
	d.procs = append(d.procs, cmd)
	if d.byCtl == nil {
		d.byCtl = map[string]*exec.Cmd{}
	}
	d.byCtl[cfg.Control] = cmd
	return vmm.ProcessOf(cmd.Process.Pid)
}

func (d *fakeDriver) Version(context.Context) (string, error) { return "fake 1", nil }
func (d *fakeDriver) Save(context.Context, vmm.Config, string) error {
	return errors.New("the fake driver saves no state")
}
func (d *fakeDriver) Snapshot(context.Context, vmm.Config, string, func() error) (time.Duration, error) {
	return 0, errors.New("the fake driver takes no snapshots")
}
func (d *fakeDriver) Overlay(context.Context, string, string, string) (vmm.Disk, error) {
	return vmm.Disk{}, errors.New("the fake driver makes no overlays")
}
func (d *fakeDriver) Backing(context.Context, string) (string, string, error) { return "", "", nil }
func (d *fakeDriver) Rebase(context.Context, string, string, string) error    { return nil }

// Flatten records what it was asked to flatten.
func (d *fakeDriver) Flatten(_ context.Context, disk vmm.Disk, dst string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.flattened = append(d.flattened, disk.Path)
	var b []byte
	if d.flattenFrom != "" {
		var err error
		if b, err = os.ReadFile(d.flattenFrom); err != nil {
			return err
		}
	}
	return os.WriteFile(dst, b, 0o600)
}

func (d *fakeDriver) Quit(ctx context.Context, cfg vmm.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.byCtl[cfg.Control]; c != nil {
		c.Process.Kill()
	}
	return nil
}

func (d *fakeDriver) killAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.procs {
		c.Process.Kill()
	}
}

const readyConsole = "boot\n" + guestproto.HostKeyPrefix + "SHA256:fakekey\n" + guestproto.ReadyMarker + ": kernel 6.1, root rw\n"

type fakeImages struct {
	disk    string
	adopted *[]api.Image // what Adopt published, when set
}

// Adopt runs fill into a file of its own and "publishes" the image.
func (f fakeImages) Adopt(ctx context.Context, name, kernel, source string, fill func(ctx context.Context, dst string) error, p operation.Progress) (api.Image, error) {
	dir, err := os.MkdirTemp("", "fake-adopt-")
	if err != nil {
		return api.Image{}, err
	}
	defer os.RemoveAll(dir)
	if err := fill(ctx, filepath.Join(dir, "rootfs.ext4")); err != nil {
		return api.Image{}, err
	}
	im := api.Image{Name: name, Kernel: kernel, Source: source, SourceKind: api.SourcePromote}
	if f.adopted != nil {
		*f.adopted = append(*f.adopted, im)
	}
	return im, nil
}

func (f fakeImages) Ensure(ctx context.Context, name string, p operation.Progress) (api.Image, error) {
	if name != "img" {
		return api.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return api.Image{Name: "img", Kernel: "k", Disk: f.disk}, nil
}

func (f fakeImages) Get(ctx context.Context, name string) (api.Image, error) {
	return f.Ensure(ctx, name, operation.Discard)
}

// fakeKernels knows kernels "k" (images' default) and "own", and records
// what was ensured when asked to.
type fakeKernels struct{ ensured *[]string }

func (f fakeKernels) Ensure(ctx context.Context, name string, p operation.Progress) (api.Kernel, error) {
	if f.ensured != nil {
		*f.ensured = append(*f.ensured, name)
	}
	if name != "k" && name != "own" {
		return api.Kernel{}, fmt.Errorf("kernel %q: %w", name, errdefs.ErrNotFound)
	}
	return api.Kernel{Name: name, Dir: "/kernels/" + name}, nil
}

func newTestService(t *testing.T, d *fakeDriver) (*Service, *store.Store, layout.Layout) {
	t.Helper()
	dir := t.TempDir()
	lay := layout.Layout{Root: filepath.Join(dir, "state")}
	for _, p := range lay.Dirs() {
		os.MkdirAll(p, 0o755)
	}
	st, err := store.Open(context.Background(), lay.DB())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.killAll(); st.Close() })
	disk := filepath.Join(dir, "image.ext4")
	os.WriteFile(disk, []byte("ext4"), 0o644)
	os.Truncate(disk, 128<<20)
	s := New(Deps{
		Store: st, Images: fakeImages{disk: disk}, Kernels: fakeKernels{}, Driver: d, Runner: &runner.Recorder{}, Layout: lay,
		Defaults: Defaults{Image: "img", CPUs: 1, MemoryMB: 256, ReadyTimeout: 5 * time.Second, StopTimeout: time.Second},
		Log:      slog.New(slog.DiscardHandler),
	})
	return s, st, lay
}

const userKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXkw0hLvTmoW8Gq3U8tVjq2y3m5yqVvS9kL1m5b3a0p user@host"

func TestCreateAndStart(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, lay := newTestService(t, d)
	ctx := context.Background()
	hostPort, err := request.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Create(ctx, api.VMCreateRequest{Name: "web", Start: true, AuthorizedKeys: []string{userKey}, Ports: []string{fmt.Sprintf("%d:80", hostPort)}}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != api.VMRunning || v.HostKey != "SHA256:fakekey" || v.PID == 0 || v.Image != "img" || v.Kernel != "k" || v.CPUs != 1 || v.MemoryMB != 256 {
		t.Fatalf("created: %+v", v)
	}
	cfg := d.started[0]
	if cfg.Accel != fakeAccel || v.Accel != "tcg (no /dev/kvm)" {
		t.Errorf("accel: config %+v, recorded %q", cfg.Accel, v.Accel)
	}
	for _, want := range []string{"banger.name=web", "init=/.banger/init", guestproto.ParamKeys + "=" + guestproto.EncodeKeys([]string{strings.TrimSuffix(userKey, " user@host")}), "fake=tcg"} {
		if !strings.Contains(cfg.Cmdline, want) {
			t.Errorf("cmdline %q lacks %q", cfg.Cmdline, want)
		}
	}
	want := []vmm.Forward{{HostPort: v.SSHPort, GuestPort: 22}, {HostPort: hostPort, GuestPort: 80}}
	if !slices.Equal(cfg.Network.Forwards, want) {
		t.Errorf("forwards %+v, want SSH and the published port: %+v", cfg.Network.Forwards, want)
	}
	if !strings.Contains(cfg.Cmdline, "fakenet=user") {
		t.Errorf("cmdline %q lacks the driver's network words", cfg.Cmdline)
	}
	if _, err := os.Stat(filepath.Join(lay.VM("web"), vmdisk.RootRaw)); err != nil {
		t.Errorf("root disk: %v", err)
	}
	// Starting a running VM is a no-op.
	if again, err := s.Start(ctx, "web", api.VMStartRequest{}, operation.Discard); err != nil || again.PID != v.PID {
		t.Errorf("second start: %+v, %v", again, err)
	}
	if err := s.Remove(ctx, "web", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("rm of a running VM without force: %v", err)
	}
	stopped, err := s.Stop(ctx, "web", api.VMStopRequest{Timeout: "0s"}, operation.Discard)
	if err != nil || stopped.State != api.VMStopped || stopped.PID != 0 {
		t.Fatalf("stop: %+v, %v", stopped, err)
	}
	if p, err := vmm.ProcessOf(v.PID); err == nil && p.Alive() {
		t.Error("the VMM process outlived stop")
	}
	// The second boot's console is read from where it starts: the first
	// boot's ready line does not count.
	d.console = "second boot hangs\n"
	if _, err := s.Start(ctx, "web", api.VMStartRequest{ReadyTimeout: "300ms"}, operation.Discard); err == nil || !strings.Contains(err.Error(), "second boot hangs") {
		t.Fatalf("start whose guest never gets ready: %v", err)
	}
	if g, _ := s.Get(ctx, "web"); g.State != api.VMStopped {
		t.Fatalf("after a failed start: %s", g.State)
	}
	if err := s.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lay.VM("web")); !os.IsNotExist(err) {
		t.Errorf("vm directory left: %v", err)
	}
	if _, err := s.Get(ctx, "web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("get after rm: %v", err)
	}
}

// A VM given a kernel of its own boots it, and its image's default kernel
// is never reached for (it might be a 450 MiB pull, or out of reach).
func TestCreateResolvesTheKernelOnce(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	var ensured []string
	s.d.Kernels = fakeKernels{ensured: &ensured}
	v, err := s.Create(context.Background(), api.VMCreateRequest{Name: "own", Kernel: "own", Start: true}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v.Kernel != "own" || d.started[0].Kernel != "/kernels/own/vmlinux" {
		t.Fatalf("vm kernel %q, booted %q: want own", v.Kernel, d.started[0].Kernel)
	}
	if slices.Contains(ensured, "k") {
		t.Fatalf("kernels ensured %v: the image's default kernel was reached for", ensured)
	}
}

func TestCreateAndStartFailureLeavesNothing(t *testing.T) {
	d := &fakeDriver{console: "Kernel panic - not syncing: VFS: Unable to mount root fs\n", exit: true}
	s, _, lay := newTestService(t, d)
	_, err := s.Create(context.Background(), api.VMCreateRequest{Name: "doomed", Start: true}, operation.Discard)
	if err == nil || !strings.Contains(err.Error(), "stopped before it was ready") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Fatalf("create of a panicking guest: %v", err)
	}
	if vs, _ := s.List(context.Background()); len(vs) != 0 {
		t.Errorf("listed: %+v", vs)
	}
	if ents, _ := os.ReadDir(lay.VMs()); len(ents) != 0 {
		t.Errorf("left in vms/: %v", ents)
	}
}

// accel = kvm on a host whose KVM is broken: vm run fails at once with the
// probe's reason, before any image, disk or record is made.
func TestAccelRefusedLeavesNothing(t *testing.T) {
	d := &fakeDriver{console: readyConsole, accelErr: fmt.Errorf("accel = kvm, but KVM does not work on this host: kvm present but broken: qemu aborted setting MSR 0x10a: %w", errdefs.ErrUnavailable)}
	s, _, lay := newTestService(t, d)
	ctx := context.Background()
	req := api.VMCreateRequest{Name: "fast", Start: true}
	if err := s.CheckCreate(ctx, req); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "MSR 0x10a") {
		t.Fatalf("check: %v", err)
	}
	if _, err := s.Create(ctx, req, operation.Discard); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("create: %v", err)
	}
	if vs, _ := s.List(ctx); len(vs) != 0 {
		t.Errorf("listed: %+v", vs)
	}
	if ents, _ := os.ReadDir(lay.VMs()); len(ents) != 0 {
		t.Errorf("left in vms/: %v", ents)
	}
	if len(d.started) != 0 {
		t.Errorf("a VMM was started")
	}
	// A VM made without starting it is fine; starting it is refused.
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "later"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "later", api.VMStartRequest{}, operation.Discard); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("start: %v", err)
	}
}

func TestStateFollowsTheProcess(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, st, lay := newTestService(t, d)
	ctx := context.Background()
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "a", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "b", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	// What a crash mid-create leaves: a directory and a socket nobody owns.
	os.MkdirAll(filepath.Join(lay.VMs(), "half-made"), 0o755)
	os.WriteFile(filepath.Join(lay.Run(), "deadbeef.sock"), nil, 0o600)
	// A daemon restart: a new service on the same store finds both.
	s2 := New(Deps{Store: st, Images: s.d.Images, Kernels: fakeKernels{}, Driver: d, Runner: &runner.Recorder{}, Layout: lay, Log: s.d.Log})
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	vs, _ := s2.List(ctx)
	if len(vs) != 2 || vs[0].State != api.VMRunning || vs[1].State != api.VMRunning {
		t.Fatalf("after restart: %+v", vs)
	}
	if left := readDir(lay.VMs()); len(left) != 2 {
		t.Errorf("vms/ after restart: %v, want only a and b", left)
	}
	if _, err := os.Stat(filepath.Join(lay.Run(), "deadbeef.sock")); !os.IsNotExist(err) {
		t.Errorf("a socket no VM owns survived the restart: %v", err)
	}
	// The VMM of b killed by hand.
	d.procs[1].Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := s2.Get(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		if b.State == api.VMStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b still %s after its VMM was killed", b.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, _ := s2.Get(ctx, "a"); a.State != api.VMRunning {
		t.Errorf("a is %s", a.State)
	}
	u := usage.Usage{Store: st}
	if used, _ := u.VMsUsingImage(ctx, "img"); len(used) != 2 {
		t.Errorf("VMsUsingImage = %v", used)
	}
	if used, _ := u.VMsUsingKernel(ctx, "k"); len(used) != 2 {
		t.Errorf("VMsUsingKernel = %v", used)
	}
}

func TestBadRequests(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	ctx := context.Background()
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "taken"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  api.VMCreateRequest
		code string
		want string
	}{
		{"name taken", api.VMCreateRequest{Name: "taken"}, "conflict", "already exists"},
		{"bad name", api.VMCreateRequest{Name: "../etc"}, "invalid", "not valid"},
		{"cpus", api.VMCreateRequest{CPUs: -1}, "invalid", "CPUs"},
		{"memory", api.VMCreateRequest{MemoryMB: 1}, "invalid", "at least 128 MiB"},
		{"too much memory", api.VMCreateRequest{MemoryMB: 1 << 30}, "invalid", "more than this host has"},
		{"port syntax", api.VMCreateRequest{Ports: []string{"80:"}}, "invalid", "HOST:GUEST"},
		{"port twice", api.VMCreateRequest{Ports: []string{"8080:80", "8080:81"}}, "invalid", "twice"},
		{"port on a name, not an address", api.VMCreateRequest{Ports: []string{"localhost:8080:80"}}, "invalid", "IPv4 address"},
		{"port on IPv6", api.VMCreateRequest{Ports: []string{"[::1]:8080:80"}}, "invalid", "IPv4 only"},
		{"disk syntax", api.VMCreateRequest{Disk: "lots"}, "invalid", "--disk"},
		{"disk too small", api.VMCreateRequest{Disk: "1M"}, "invalid", "too small"},
		{"too many keys", api.VMCreateRequest{AuthorizedKeys: []string{userKey, userKey, userKey, userKey, userKey, userKey, userKey, userKey, userKey, userKey, userKey, userKey, userKey}}, "invalid", "over the 1024"},
		{"bad key", api.VMCreateRequest{AuthorizedKeys: []string{"not a key"}}, "invalid", "authorized key"},
		{"bad timeout", api.VMCreateRequest{ReadyTimeout: "soon"}, "invalid", "duration"},
		{"no such image", api.VMCreateRequest{Image: "nope"}, "not_found", "nope"},
		{"no such kernel", api.VMCreateRequest{Kernel: "nope"}, "not_found", "nope"},
		{"init", api.VMCreateRequest{Init: "upstart"}, "invalid", `want "banger" or "systemd"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Create(ctx, tt.req, operation.Discard)
			if err == nil || errdefs.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (%s), want %s with %q", err, errdefs.Code(err), tt.code, tt.want)
			}
		})
	}
	if vs, _ := s.List(ctx); len(vs) != 1 {
		t.Errorf("bad requests left VMs: %+v", vs)
	}
}

func TestPublishedPortInUse(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = s.Create(context.Background(), api.VMCreateRequest{Name: "p", Start: true, Ports: []string{fmt.Sprintf("%d:80", port)}}, operation.Discard)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "is in use there") {
		t.Fatalf("err = %v", err)
	}
	if len(d.started) != 0 {
		t.Error("the VMM was started anyway")
	}
	if vs, _ := s.List(context.Background()); len(vs) != 0 {
		t.Errorf("left: %+v", vs)
	}
}

func TestCmdline(t *testing.T) {
	got := guestboot.Cmdline("web", true, []string{userKey}, []string{"tsc_early_khz=2000000"})
	for _, w := range []string{"console=ttyS0", "root=/dev/vda", "rw", "panic=-1", "banger.name=web", "tsc_early_khz=2000000"} {
		if !strings.Contains(" "+got+" ", " "+w+" ") {
			t.Errorf("cmdline %q lacks %q", got, w)
		}
	}
	if strings.Contains(got, "init=") {
		t.Errorf("with an initramfs the agent hands over itself: %q", got)
	}
	// As many keys as checkParams lets through.
	var many []string
	for n := 0; n+len(userKey)+1 <= MaxKeysBytes; n += len(userKey) + 1 {
		many = append(many, userKey)
	}
	many = append(many, userKey) // the daemon's own
	if n := len(guestboot.Cmdline("a-name-of-sixty-three-characters-which-is-the-longest-allowed-x", false, many, []string{"tsc_early_khz=2000000"})); n > 2048 {
		t.Errorf("the longest command line is %d bytes, over the kernel's 2048", n)
	}
}

// TestInitSystem: --init systemd reaches the guest's command line and the
// record; "banger" is the default, recorded as such; a guest that comes
// up with banger's init when asked for systemd (an image without it)
// fails the start, and create with start leaves nothing.
func TestInitSystem(t *testing.T) {
	ctx := context.Background()
	sdConsole := guestproto.HostKeyPrefix + "SHA256:fakekey\n" + guestproto.ReadyMarker + ": kernel 6.1, root rw, init systemd (running)\n"
	d := &fakeDriver{console: sdConsole}
	s, _, _ := newTestService(t, d)
	v, err := s.Create(ctx, api.VMCreateRequest{Name: "sd", Init: "systemd", Start: true}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v.Init != "systemd" || !strings.Contains(" "+d.started[0].Cmdline+" ", " banger.init=systemd ") {
		t.Errorf("init %q, cmdline %q", v.Init, d.started[0].Cmdline)
	}
	if v, err = s.Create(ctx, api.VMCreateRequest{Name: "own", Init: "banger"}, operation.Discard); err != nil || v.Init != "" {
		t.Errorf("--init banger: %q, %v", v.Init, err)
	}

	d2 := &fakeDriver{console: "banger-agent: init systemd: this image has no systemd; banger's own init instead\n" + readyConsole}
	s2, _, _ := newTestService(t, d2)
	_, err = s2.Create(ctx, api.VMCreateRequest{Name: "nosd", Init: "systemd", Start: true}, operation.Discard)
	if err == nil || !strings.Contains(err.Error(), "asked to boot with init systemd") || !strings.Contains(err.Error(), "this image has no systemd") {
		t.Fatalf("a guest without systemd: %v", err)
	}
	if vs, _ := s2.List(ctx); len(vs) != 0 {
		t.Errorf("left: %+v", vs)
	}
}

func TestCreateRecordsMadeBy(t *testing.T) {
	s, _, _ := newTestService(t, &fakeDriver{console: readyConsole})
	ctx := context.Background()
	for _, m := range []*api.MadeBy{
		{Tool: "", Checkout: "/home/u/repo"},
		{Tool: "MCP!", Checkout: "/home/u/repo"},
		{Tool: "mcp", Checkout: "relative/repo"},
		{Tool: "mcp", Checkout: "/home/u/../repo"},
		{Tool: "mcp", Checkout: "/home/u/repo\n\x1b[31mfake"},
		{Tool: "mcp", Checkout: "/" + strings.Repeat("a", 5000)},
	} {
		if _, err := s.Create(ctx, api.VMCreateRequest{Name: "bad", MadeBy: m}, operation.Discard); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("made_by %+q: %v, want invalid", *m, err)
		}
	}
	if vs, _ := s.List(ctx); len(vs) != 0 {
		t.Fatalf("refused requests left VMs: %+v", vs)
	}
	want := api.MadeBy{Tool: "mcp", Checkout: "/home/u/repo"}
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "agent", MadeBy: &want}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "agent"); err != nil || got.MadeBy == nil || *got.MadeBy != want {
		t.Fatalf("made_by after create: %+v, %v", got.MadeBy, err)
	}
}

func TestParsePort(t *testing.T) {
	for _, tt := range []struct {
		spec string
		want api.PortForward
		err  string
	}{
		{"8080:80", api.PortForward{HostPort: 8080, GuestPort: 80}, ""},
		{"8080", api.PortForward{HostPort: 8080, GuestPort: 8080}, ""},
		// 127.0.0.1 is the default, stored as such.
		{"127.0.0.1:8080:80", api.PortForward{HostPort: 8080, GuestPort: 80}, ""},
		{"0.0.0.0:8080:80", api.PortForward{HostIP: "0.0.0.0", HostPort: 8080, GuestPort: 80}, ""},
		{"192.0.2.7:9000:22", api.PortForward{HostIP: "192.0.2.7", HostPort: 9000, GuestPort: 22}, ""},
		{"5353:53/udp", api.PortForward{HostPort: 5353, GuestPort: 53, Proto: "udp"}, ""},
		{"0.0.0.0:53:53/udp", api.PortForward{HostIP: "0.0.0.0", HostPort: 53, GuestPort: 53, Proto: "udp"}, ""},
		{"8080:80/tcp", api.PortForward{HostPort: 8080, GuestPort: 80}, ""},
		{"8080:80/sctp", api.PortForward{}, "tcp or udp"},
		{"0:80", api.PortForward{}, "between 1 and 65535"},
		{"8080:65536", api.PortForward{}, "between 1 and 65535"},
		{"x:8080:80", api.PortForward{}, "IPv4 address"},
		{"::1:8080:80", api.PortForward{}, "IPv4 only"},
		{"1.2.3.4:5:6:7", api.PortForward{}, "IPv4 only"},
		{"", api.PortForward{}, "between 1 and 65535"},
	} {
		got, err := request.Port(tt.spec)
		if tt.err != "" {
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want invalid with %q", tt.spec, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
	}
}

// A caller who is not root publishes only ports it could bind itself; the
// daemon binds them as root.
func TestPrivilegedPortNeedsRoot(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	user := peer.NewContext(context.Background(), unix.Ucred{Pid: 1, Uid: 1000, Gid: 1000})
	root := peer.NewContext(context.Background(), unix.Ucred{Pid: 1})
	check := func(start int) {
		low := fmt.Sprintf("%d:80", start-1)
		err := s.CheckCreate(user, api.VMCreateRequest{Ports: []string{low}})
		if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "privileged") {
			t.Errorf("-p %s as uid 1000: %v, want permission denied", low, err)
		}
		if err := s.CheckCreate(user, api.VMCreateRequest{Ports: []string{fmt.Sprintf("%d:80", start)}}); err != nil {
			t.Errorf("-p %d:80 as uid 1000: %v", start, err)
		}
		if err := s.CheckCreate(root, api.VMCreateRequest{Ports: []string{low}}); err != nil {
			t.Errorf("-p %s as root: %v", low, err)
		}
	}
	if start := request.UnprivilegedPortStart(); start >= 2 {
		check(start)
	} else {
		// This host lets anyone bind any port (a container's network
		// often does): the check runs in a network namespace of the
		// test's own, where the kernel's default holds.
		testkit.NeedRoot(t, fmt.Sprintf("net.ipv4.ip_unprivileged_port_start is %d here: a network namespace where it is 1024", start))
		inNetnsWithPortStart(t, 1024, func() { check(1024) })
	}
	// A forward on another address reaches the driver with it.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if _, err := s.Create(root, api.VMCreateRequest{Name: "wide", Start: true, Ports: []string{fmt.Sprintf("0.0.0.0:%d:80", free)}}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if len(d.started) != 1 || !slices.Contains(d.started[0].Network.Forwards, vmm.Forward{HostIP: "0.0.0.0", HostPort: free, GuestPort: 80}) {
		t.Errorf("the driver got %+v", d.started)
	}
}

// inNetnsWithPortStart runs f on a thread of its own in a network
// namespace of its own whose net.ipv4.ip_unprivileged_port_start is
// start: /proc/sys/net is the reading thread's namespace's. f must not
// call t.Fatal.
func inNetnsWithPortStart(t *testing.T, start int, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends with the goroutine, namespace
		// and all, rather than going back to the pool.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte(strconv.Itoa(start)), 0o644); err != nil {
			t.Errorf("set the namespace's unprivileged port start: %v", err)
			return
		}
		if got := request.UnprivilegedPortStart(); got != start {
			t.Errorf("the namespace's unprivileged port start is %d, want %d", got, start)
			return
		}
		f()
	}()
	<-done
}
