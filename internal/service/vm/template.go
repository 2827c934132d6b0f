package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/sshkey"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Files a VM resumed from a template has beside its overlay.
const (
	// templateBase links the template's root disk into the VM's own
	// directory, and the overlay is made over the link: the template can
	// be removed or replaced while the VM lives on.
	templateBase = "template-base"
	// emptyWork stands in the template's work disk place for a VM without
	// one: the saved guest has a device there.
	emptyWork = "no-work.raw"
	// placeholderBytes is the empty work disk's size.
	placeholderBytes = 1 << 20
)

// templateHostname is the saved guest's name until a clone gets its own.
const templateHostname = "banger-template"

// templatable says whether v's start may resume from a template: the
// driver can save and restore, and the VM never booted (a VM that did
// has a disk of its own that no template's memory matches).
func (s *Service) templatable(v store.VM) bool {
	f := s.d.Driver.Features()
	// Only the user-mode network's guests: a template's guest has the
	// user-mode address, which every clone shares behind its own VMM.
	user := v.Network == "" || v.Network == api.NetUser
	return s.d.Templates != "" && f.Snapshots && f.Overlays && s.d.Key != nil && v.StartedAt.IsZero() && v.Snapshot == "" && user
}

// templateKey is what the template for v must have been made with.
func (s *Service) templateKey(ctx context.Context, v store.VM, k api.Kernel, acc vmm.Accel) (template.Key, error) {
	im, err := s.d.Images.Get(ctx, v.Image)
	if err != nil {
		return template.Key{}, err
	}
	agent := ""
	if s.d.Agent != "" {
		if agent, err = s.agentDigest(); err != nil {
			return template.Key{}, err
		}
	}
	build, err := s.d.Driver.Version(ctx)
	if err != nil {
		return template.Key{}, err
	}
	return template.Key{
		Image: im.Name, ImageDigest: im.Digest, Kernel: k.Name, KernelDigest: k.Digest, Agent: agent,
		VMM: s.d.Driver.Name() + " " + build, Accel: acc.Name + " " + acc.CPU, Network: s.d.Driver.Network(),
		Params: strings.Join(append(s.d.Driver.GuestParams(acc), s.d.Driver.NetParams(vmm.Network{})...), " "),
		CPUs:   v.CPUs, MemoryMB: v.MemoryMB, DiskBytes: v.DiskBytes,
	}, nil
}

// startFromTemplate resumes v from the template of its kind, making the
// template first (one boot) when there is none or it is out of date. On
// an error v has not started, and its root disk may be the template's
// overlay: the caller boots it cold after pristineRoot.
func (s *Service) startFromTemplate(ctx context.Context, v *store.VM, cold vmm.Config, k api.Kernel, timeout time.Duration, p operation.Progress) error {
	key, err := s.templateKey(ctx, *v, k, cold.Accel)
	if err != nil {
		return err
	}
	t, err := s.template(ctx, key, cold, timeout, p)
	if err != nil {
		return err
	}
	return s.resume(ctx, v, t, cold, timeout, p)
}

// template returns the template for key, making it when it is missing,
// out of date or damaged. Concurrent starts of one kind make it once.
func (s *Service) template(ctx context.Context, key template.Key, cold vmm.Config, timeout time.Duration, p operation.Progress) (template.Template, error) {
	id := key.ID()
	unlock, err := s.boot.Lock(ctx, "template:"+id, func() {
		p.Stage("template", "waiting for template %s, which another start is making", id)
	})
	if err != nil {
		return template.Template{}, err
	}
	defer unlock()
	t, err := s.d.Templates.Get(id)
	switch {
	case err == nil:
		diff, missing := key.Diff(t.Key), t.Missing()
		if diff == "" && missing == "" {
			return t, nil
		}
		why := "was made with " + diff
		if missing != "" {
			why = "lost its " + missing
		}
		p.Stage("template", "template %s %s: removing it and making a new one", id, why)
		s.d.Log.Warn("template out of date", "template", id, "why", why)
		if err := s.d.Templates.Remove(id); err != nil {
			return template.Template{}, err
		}
	case errors.Is(err, template.ErrNone):
	default:
		p.Stage("template", "%v: making a new one", err)
		s.d.Templates.Remove(id)
	}
	if why, failed := s.failedTemplate(id); failed {
		return template.Template{}, fmt.Errorf("template %s could not be made earlier (%s)", id, why)
	}
	t, booted, err := s.makeTemplate(ctx, key, cold, timeout, p)
	if err != nil {
		if booted && ctx.Err() == nil {
			// The guest booted and could not be saved: this driver or
			// host cannot, and each try costs a boot. Not tried again by
			// this daemon. (A boot that failed fails the cold boot too.)
			s.tplMu.Lock()
			if s.tplFailed == nil {
				s.tplFailed = map[string]string{}
			}
			s.tplFailed[id] = err.Error()
			s.tplMu.Unlock()
		}
		return template.Template{}, fmt.Errorf("make template %s: %w", id, err)
	}
	return t, nil
}

func (s *Service) failedTemplate(id string) (string, bool) {
	s.tplMu.Lock()
	defer s.tplMu.Unlock()
	why, ok := s.tplFailed[id]
	return why, ok
}

// makeTemplate boots a guest of key's kind with no identity of its own
// (the template's hostname, only the daemon's key), saves it once its
// agent is ready, and publishes it.
func (s *Service) makeTemplate(ctx context.Context, key template.Key, cold vmm.Config, timeout time.Duration, p operation.Progress) (t template.Template, booted bool, err error) {
	id := key.ID()
	im, err := s.d.Images.Get(ctx, key.Image)
	if err != nil {
		return t, false, err
	}
	base, err := s.baseFor(ctx, im, key.DiskBytes, p)
	if err != nil {
		return t, false, err
	}
	build, err := s.d.Templates.Build(id)
	if err != nil {
		return t, false, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(build)
		}
	}()
	disk, err := makeRootDisk(ctx, s.d.Driver, base, build)
	if err != nil {
		return t, false, err
	}
	work := filepath.Join(build, template.WorkFile)
	if err := placeholder(work); err != nil {
		return t, false, err
	}
	cfg := vmm.Config{
		Name: "template-" + id, CPUs: key.CPUs, MemoryMB: key.MemoryMB,
		Kernel: cold.Kernel, Initrd: cold.Initrd,
		Cmdline: Cmdline(templateHostname, cold.Initrd != "", []string{sshkey.AuthorizedLine(s.d.Key.PublicKey(), "banger-daemon")}, append(s.d.Driver.GuestParams(cold.Accel), s.d.Driver.NetParams(vmm.Network{})...)),
		Disks:   []vmm.Disk{disk, {ID: "work", Path: work, Format: "raw"}},
		Console: filepath.Join(build, "console.log"), Control: filepath.Join(s.d.Layout.Run(), "t-"+newID()+".sock"),
		Log: filepath.Join(build, "vmm.log"), Accel: cold.Accel,
		Memory: &vmm.Memory{Path: filepath.Join(build, template.MemoryFile), Shared: true},
	}
	defer os.Remove(cfg.Control)
	p.Stage("template", "no template for image %s at %d CPU, %d MiB yet: booting one (later VMs of this kind resume from it)", key.Image, key.CPUs, key.MemoryMB)
	began := time.Now()
	proc, err := s.d.Driver.Start(ctx, cfg)
	if err != nil {
		return t, false, err
	}
	defer func() {
		if err != nil {
			proc.Kill()
		}
	}()
	hostKey, err := waitReady(ctx, cfg.Name, cfg.Console, 0, proc, timeout)
	if err != nil {
		return t, false, err
	}
	bootTook := time.Since(began)
	p.Stage("template", "saving template %s (booted in %s)", id, bootTook.Round(time.Millisecond))
	if err := s.d.Driver.Save(ctx, cfg, filepath.Join(build, template.StateFile)); err != nil {
		return t, true, err
	}
	// The VMM flushes the root disk as it quits; only then is the disk
	// what the saved memory believes it is.
	if err := s.d.Driver.Quit(ctx, cfg); err != nil {
		return t, true, err
	}
	if !waitExit(ctx, proc, 10*time.Second) {
		return t, true, fmt.Errorf("the template's VMM did not quit")
	}
	t = template.Template{ID: id, Key: key, Disk: disk, HostKey: hostKey, CreatedAt: time.Now().UTC(), BootTook: bootTook}
	if err := s.d.Templates.Publish(build, t); err != nil {
		return t, true, err
	}
	s.d.Log.Info("made template", "template", id, "boot_took", bootTook, "took", time.Since(began))
	t, err = s.d.Templates.Get(id)
	return t, true, err
}

// placeholder makes an empty, sparse raw disk.
func placeholder(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(placeholderBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// resume starts v from t: its root disk an overlay over the template's,
// its work disk (or an empty one) where the template's placeholder was,
// and then, before anyone else reaches it, its own identity.
func (s *Service) resume(ctx context.Context, v *store.VM, t template.Template, cold vmm.Config, timeout time.Duration, p operation.Progress) error {
	dir := s.d.Layout.VM(v.Name)
	root, err := s.templateRoot(ctx, dir, t)
	if err != nil {
		return err
	}
	work := vmm.Disk{ID: "work", Path: workDisk(dir), Format: "raw"}
	if v.Work == nil {
		work.Path = filepath.Join(dir, emptyWork)
		if err := placeholder(work.Path); err != nil {
			return err
		}
	}
	cfg := cold
	cfg.Disks = []vmm.Disk{root, work}
	cfg.Memory = &vmm.Memory{Path: t.Memory()}
	cfg.Restore = t.State()
	v.Template = t.ID
	if err := s.resumeFrom(ctx, v, cfg, "template "+t.ID, t.HostKey, v.Work != nil, timeout, p); err != nil {
		v.Template = ""
		return err
	}
	return nil
}

// resumeFrom starts v from a saved state (what names it), then, before
// anyone else reaches it, gives it its identity, pinning the saved
// guest's host key until it has its own; with mountWork the agent mounts
// its work disk then.
func (s *Service) resumeFrom(ctx context.Context, v *store.VM, cfg vmm.Config, what, savedKey string, mountWork bool, timeout time.Duration, p operation.Progress) error {
	p.Stage("boot", "resuming vm %s from %s: %s (%s), %d CPU, %d MiB, network %s", v.Name, what, s.d.Driver.Name(), cfg.Accel.Name, v.CPUs, v.MemoryMB, s.networkLine(*v))
	began := time.Now()
	proc, err := s.d.Driver.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := s.police(ctx, *v, proc.PID); err != nil {
		proc.Kill()
		return err
	}
	vmmTook := time.Since(began)
	v.State, v.PID, v.PIDStart, v.HostKey, v.StartedAt = api.VMStarting, proc.PID, proc.StartTime, "", time.Now().UTC()
	v.Accel = cfg.Accel.String()
	fail := func(err error) error {
		proc.Kill()
		waitExit(context.WithoutCancel(ctx), proc, 3*time.Second)
		v.State, v.PID, v.PIDStart, v.StartedAt = api.VMStopped, 0, 0, time.Time{}
		s.d.Store.UpdateVM(context.WithoutCancel(ctx), *v)
		return err
	}
	if err := s.d.Store.UpdateVM(ctx, *v); err != nil {
		return fail(err)
	}
	key, err := s.giveIdentity(ctx, *v, savedKey, mountWork, timeout)
	if err != nil {
		return fail(fmt.Errorf("give vm %s its identity: %w", v.Name, err))
	}
	v.State, v.HostKey = api.VMRunning, key
	if err := s.d.Store.UpdateVM(ctx, *v); err != nil {
		return err
	}
	if err := writeBoot(s.d.Layout.VM(v.Name), cfg); err != nil {
		s.d.Log.Warn("record the vm's layout", "vm", v.Name, "err", err)
	}
	p.Stage("ready", "vm %s is ready after %s (resumed from %s)", v.Name, time.Since(began).Round(time.Millisecond), what)
	s.d.Log.Info("resumed vm", "vm", v.Name, "from", what, "pid", proc.PID, "vmm_took", vmmTook, "ready_after", time.Since(began))
	return nil
}

// templateRoot replaces the VM's root disk by an overlay over t's,
// reached through a link in the VM's directory.
func (s *Service) templateRoot(ctx context.Context, dir string, t template.Template) (vmm.Disk, error) {
	if err := removeRoot(dir); err != nil {
		return vmm.Disk{}, err
	}
	base := filepath.Join(dir, templateBase)
	if err := os.Link(t.Disk.Path, base); err != nil {
		return vmm.Disk{}, fmt.Errorf("link template %s's disk: %w", t.ID, err)
	}
	return s.d.Driver.Overlay(ctx, base, t.Disk.Format, filepath.Join(dir, rootQcow2))
}

// removeRoot removes a VM's root disk, whichever way it was made.
func removeRoot(dir string) error {
	for _, f := range []string{rootQcow2, rootRaw, templateBase, emptyWork} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// pristineRoot gives a VM whose resume failed a fresh root disk from its
// image, as create made it, to boot cold.
func (s *Service) pristineRoot(ctx context.Context, v store.VM, p operation.Progress) (vmm.Disk, error) {
	dir := s.d.Layout.VM(v.Name)
	if err := removeRoot(dir); err != nil {
		return vmm.Disk{}, err
	}
	im, err := s.d.Images.Get(ctx, v.Image)
	if err != nil {
		return vmm.Disk{}, err
	}
	base, err := s.baseFor(ctx, im, v.DiskBytes, p)
	if err != nil {
		return vmm.Disk{}, err
	}
	return makeRootDisk(ctx, s.d.Driver, base, dir)
}

// giveIdentity reaches a resumed guest's agent, which still serves the
// template's host key, and has it become v: hostname, authorized keys,
// a host key of its own (whose fingerprint it answers, and which is
// pinned from then on), machine ID, fresh entropy, the host's clock,
// and its work disk.
func (s *Service) giveIdentity(ctx context.Context, v store.VM, templateKey string, mountWork bool, timeout time.Duration) (string, error) {
	keys := append([]string{sshkey.AuthorizedLine(s.d.Key.PublicKey(), "banger-daemon")}, v.AuthorizedKeys...)
	entropy := make([]byte, 64)
	mid := make([]byte, 16)
	if _, err := rand.Read(entropy); err != nil {
		return "", err
	}
	if _, err := rand.Read(mid); err != nil {
		return "", err
	}
	id := guestproto.Identity{Hostname: v.Name, Keys: keys, Entropy: entropy, MachineID: hex.EncodeToString(mid)}
	if mountWork {
		id.Work = "/dev/vdb"
	}
	deadline := time.Now().Add(timeout)
	var c *ssh.Client
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		c, err = guestssh.Connect(cctx, v.SSHAddr(), templateKey, s.d.Key)
		cancel()
		if err == nil {
			break
		}
		if !process(v).Alive() || time.Now().After(deadline) || ctx.Err() != nil {
			return "", err
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	// The clock last: as close to the guest setting it as can be.
	id.UnixNano = time.Now().UnixNano()
	b, _ := json.Marshal(id)
	ok, reply, err := c.SendRequest(guestproto.IdentityRequest, true, ssh.Marshal(struct{ JSON string }{string(b)}))
	if err != nil {
		return "", err
	}
	if !ok {
		var m struct{ Message string }
		if ssh.Unmarshal(reply, &m) != nil || m.Message == "" {
			m.Message = "refused (an agent older than the template?)"
		}
		return "", fmt.Errorf("the guest agent says: %s", m.Message)
	}
	var r struct{ Fingerprint string }
	if err := ssh.Unmarshal(reply, &r); err != nil || !strings.HasPrefix(r.Fingerprint, "SHA256:") || r.Fingerprint == templateKey {
		return "", fmt.Errorf("the guest agent answered no new host key")
	}
	return r.Fingerprint, nil
}

// Templates lists the templates, with the VMs resumed from each.
func (s *Service) Templates(ctx context.Context) ([]api.Template, error) {
	out := []api.Template{}
	if s.d.Templates == "" {
		return out, nil
	}
	ts, bad := s.d.Templates.List()
	for _, t := range ts {
		used, err := s.d.Store.VMsUsing(ctx, "template", t.ID)
		if err != nil {
			return nil, err
		}
		if used == nil {
			used = []string{}
		}
		k := t.Key
		at := api.Template{
			ID: t.ID, Image: k.Image, Kernel: k.Kernel, CPUs: k.CPUs, MemoryMB: k.MemoryMB, DiskBytes: k.DiskBytes,
			VMM: k.VMM, Agent: short(k.Agent), Bytes: t.Bytes(), CreatedAt: t.CreatedAt, BootMillis: t.BootTook.Milliseconds(), UsedBy: used,
		}
		if m := t.Missing(); m != "" {
			at.Problem = "lost its " + m + ": made again at the next start of its kind"
		}
		out = append(out, at)
	}
	for id, err := range bad {
		out = append(out, api.Template{ID: id, UsedBy: []string{}, Problem: err.Error()})
	}
	return out, nil
}

// RemoveTemplate drops a template. VMs resumed from it keep running and
// keep their disks (each links the template's disk); the next start of
// its kind makes a new one.
func (s *Service) RemoveTemplate(ctx context.Context, id string) error {
	if s.d.Templates == "" {
		return fmt.Errorf("templates are off in this daemon's config (templates = false): %w", template.ErrNone)
	}
	unlock, err := s.boot.Lock(ctx, "template:"+id, func() {})
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.d.Templates.Remove(id); err != nil {
		return err
	}
	s.d.Log.Info("removed template", "template", id)
	return nil
}
