package template

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/kit/keyedlock"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/revert"
	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/vmm"
)

// Hostname is the saved guest's name until a clone gets its own.
const Hostname = "banger-template"

// Maker returns the template of a kind, making it (one boot, then a save)
// when there is none or it is out of date, once however many starts of
// that kind ask at the same time.
type Maker struct {
	Dir    Dir
	Driver vmm.Driver
	// Key is the daemon's: the only key the saved guest accepts.
	Key ssh.Signer
	// RunDir holds the template VMM's control socket while it runs.
	RunDir string
	// Base returns a file holding image's file system at size bytes.
	Base func(ctx context.Context, image string, size int64, p operation.Progress) (string, error)
	Log  *slog.Logger

	locks  keyedlock.Locks // per template ID
	mu     sync.Mutex
	failed map[string]string // guarded by mu: templates this daemon failed to make, and why
}

// Lock holds the template id against being made or removed meanwhile.
func (m *Maker) Lock(ctx context.Context, id string, busy func()) (func(), error) {
	return m.locks.Lock(ctx, id, busy)
}

// Get returns the template for key, making it when it is missing, out
// of date or damaged. cold is the configuration a cold boot of the kind
// would use: its kernel, initramfs and accelerator.
func (m *Maker) Get(ctx context.Context, key Key, cold vmm.Config, timeout time.Duration, p operation.Progress) (Template, error) {
	id := key.ID()
	unlock, err := m.Lock(ctx, id, func() {
		p.Stage("template", "waiting for template %s, which another start is making", id)
	})
	if err != nil {
		return Template{}, err
	}
	defer unlock()
	if t, ok, err := m.current(key, p); ok || err != nil {
		return t, err
	}
	if why, failed := m.failedBefore(id); failed {
		return Template{}, fmt.Errorf("template %s could not be made earlier (%s)", id, why)
	}
	t, booted, err := m.make(ctx, key, cold, timeout, p)
	if err != nil {
		if booted && ctx.Err() == nil {
			// The guest booted and could not be saved: this driver or
			// host cannot, and each try costs a boot. Not tried again by
			// this daemon. (A boot that failed fails the cold boot too.)
			m.mu.Lock()
			if m.failed == nil {
				m.failed = map[string]string{}
			}
			m.failed[id] = err.Error()
			m.mu.Unlock()
		}
		return Template{}, fmt.Errorf("make template %s: %w", id, err)
	}
	return t, nil
}

// current returns the published template for key when it is whole and
// made as key says; one that is not is removed.
func (m *Maker) current(key Key, p operation.Progress) (Template, bool, error) {
	id := key.ID()
	t, err := m.Dir.Get(id)
	switch {
	case err == nil:
		diff, missing := key.Diff(t.Key), t.Missing()
		if diff == "" && missing == "" {
			return t, true, nil
		}
		why := "was made with " + diff
		if missing != "" {
			why = "lost its " + missing
		}
		p.Stage("template", "template %s %s: removing it and making a new one", id, why)
		m.Log.Warn("template out of date", "template", id, "why", why)
		if err := m.Dir.Remove(id); err != nil {
			return Template{}, false, err
		}
	case errors.Is(err, ErrNone):
	default:
		p.Stage("template", "%v: making a new one", err)
		m.Dir.Remove(id)
	}
	return Template{}, false, nil
}

func (m *Maker) failedBefore(id string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	why, ok := m.failed[id]
	return why, ok
}

// make boots a guest of key's kind with no identity of its own (the
// template's hostname, only the daemon's key), saves it once its agent
// is ready, and publishes it. booted says whether the guest came up.
func (m *Maker) make(ctx context.Context, key Key, cold vmm.Config, timeout time.Duration, p operation.Progress) (t Template, booted bool, err error) {
	id := key.ID()
	base, err := m.Base(ctx, key.Image, key.DiskBytes, p)
	if err != nil {
		return t, false, err
	}
	build, err := m.Dir.Build(id)
	if err != nil {
		return t, false, err
	}
	r := revert.New()
	defer r.Fail()
	r.Add(func() { os.RemoveAll(build) })
	cfg, err := m.config(ctx, id, key, cold, base, build)
	if err != nil {
		return t, false, err
	}
	defer os.Remove(cfg.Control)
	p.Stage("template", "no template for image %s at %d CPU, %d MiB yet: booting one (later VMs of this kind resume from it)", key.Image, key.CPUs, key.MemoryMB)
	began := time.Now()
	proc, err := m.Driver.Start(ctx, cfg)
	if err != nil {
		return t, false, err
	}
	r.Add(func() { proc.Kill() })
	hostKey, err := guestboot.WaitReady(ctx, cfg.Name, cfg.Console, 0, proc, timeout, key.Init)
	if err != nil {
		return t, false, err
	}
	bootTook := time.Since(began)
	p.Stage("template", "saving template %s (booted in %s)", id, bootTook.Round(time.Millisecond))
	if err := m.save(ctx, cfg, proc, build); err != nil {
		return t, true, err
	}
	t = Template{ID: id, Key: key, Disk: cfg.Disks[0], HostKey: hostKey, CreatedAt: time.Now().UTC(), BootTook: bootTook}
	if err := m.Dir.Publish(build, t); err != nil {
		return t, true, err
	}
	r.Success()
	m.Log.Info("made template", "template", id, "boot_took", bootTook, "took", time.Since(began))
	t, err = m.Dir.Get(id)
	return t, true, err
}

// config lays out the template guest in its build directory: its root
// disk over base, an empty work disk where a clone's will be, its memory
// in a shared file the save keeps.
func (m *Maker) config(ctx context.Context, id string, key Key, cold vmm.Config, base, build string) (vmm.Config, error) {
	disk, err := vmdisk.Make(ctx, m.Driver, base, build)
	if err != nil {
		return vmm.Config{}, err
	}
	work := filepath.Join(build, WorkFile)
	if err := vmdisk.Placeholder(work); err != nil {
		return vmm.Config{}, err
	}
	sock := make([]byte, 4)
	rand.Read(sock)
	disks := []vmm.Disk{disk, {ID: "work", Path: work, Format: "raw"}}
	if m, ok := vmdisk.Modules(cold.Disks); ok && key.Modules {
		disks = append(disks, m)
	}
	return vmm.Config{
		Name: "template-" + id, CPUs: key.CPUs, MemoryMB: key.MemoryMB,
		Kernel: cold.Kernel, Initrd: cold.Initrd,
		Cmdline: guestboot.Cmdline(Hostname, cold.Initrd != "", []string{sshkey.AuthorizedLine(m.Key.PublicKey(), "banger-daemon")}, append(append(m.Driver.GuestParams(cold.Accel), m.Driver.NetParams(vmm.Network{})...), guestboot.InitParams(key.Init)...)),
		Disks:   disks,
		Console: filepath.Join(build, "console.log"), Control: filepath.Join(m.RunDir, "t-"+hex.EncodeToString(sock)+".sock"),
		Log: filepath.Join(build, "vmm.log"), Accel: cold.Accel,
		Memory: &vmm.Memory{Path: filepath.Join(build, MemoryFile), Shared: true},
	}, nil
}

// save writes the guest's device state and has its VMM quit, which
// flushes the root disk: only then is the disk what the saved memory
// believes it is.
func (m *Maker) save(ctx context.Context, cfg vmm.Config, proc vmm.Process, build string) error {
	if err := m.Driver.Save(ctx, cfg, filepath.Join(build, StateFile)); err != nil {
		return err
	}
	if err := m.Driver.Quit(ctx, cfg); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for proc.Alive() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the template's VMM did not quit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
