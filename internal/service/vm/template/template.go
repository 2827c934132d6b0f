// Package template keeps VM templates on disk: a guest saved once it was
// booted and idle (its memory file, its device state, its root disk), from
// which later VMs of the same kind resume instead of booting. A template
// is a directory published by one rename, so a daemon killed while
// writing one leaves a build directory that no listing shows and the next
// daemon sweeps.
package template

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Files in a template's directory.
const (
	MemoryFile = "memory"   // the guest's RAM
	StateFile  = "state"    // the VMM's device state
	WorkFile   = "work.raw" // the empty disk in the work disk's place
	metaFile   = "template.json"
)

// Key is everything a template's saved state depends on: a VM resumes
// from a template only when its key is the template's, field for field.
type Key struct {
	Image        string `json:"image"`
	ImageDigest  string `json:"image_digest"`
	Kernel       string `json:"kernel"`
	KernelDigest string `json:"kernel_digest"`
	// Agent is the guest agent build inside the kernel's initramfs.
	Agent string `json:"agent"`
	// VMM is the VMM's build: a saved state loads only into the build
	// that wrote it.
	VMM     string `json:"vmm"`
	Accel   string `json:"accel"`
	Network string `json:"network"`
	// Params are the driver's kernel parameters the guest booted with
	// (its clock's rate among them).
	Params    string `json:"params"`
	CPUs      int    `json:"cpus"`
	MemoryMB  int    `json:"memory_mib"`
	DiskBytes int64  `json:"disk_bytes"`
	// Modules says the guest had its kernel's modules disk (last, read
	// only): a saved guest has a device there.
	Modules bool `json:"modules,omitempty"`
	// Init is the guest's init system ("" for banger's own).
	Init string `json:"init,omitempty"`
}

// ID names the template a VM of this kind uses: its image and size are
// readable, the rest is a digest. Only what a VM asks for (image, kernel,
// size) is in it, so that a template made by another agent or VMM build
// has the same ID and is found, refused, and replaced.
func (k Key) ID() string {
	what := fmt.Sprintf("%s\x00%s\x00%d\x00%d\x00%d", k.Image, k.Kernel, k.CPUs, k.MemoryMB, k.DiskBytes)
	init := ""
	if k.Init != "" {
		// Only then: banger's own init keeps the IDs it always had.
		what += "\x00" + k.Init
		init = "-" + k.Init
	}
	h := sha256.Sum256([]byte(what))
	id := fmt.Sprintf("%s-%dc-%dm%s-%s", k.Image, k.CPUs, k.MemoryMB, init, hex.EncodeToString(h[:4]))
	if names.Validate("template", id) != nil {
		// An image name at the length limit: the digest alone.
		id = "t-" + hex.EncodeToString(h[:8])
	}
	return id
}

// Diff says which part of have differs from k, as people read it ("" if
// none).
func (k Key) Diff(have Key) string {
	var d []string
	add := func(what, want, got string) {
		if want != got {
			d = append(d, fmt.Sprintf("%s %q, not %q", what, got, want))
		}
	}
	add("image", k.Image+" "+k.ImageDigest, have.Image+" "+have.ImageDigest)
	add("kernel", k.Kernel+" "+k.KernelDigest, have.Kernel+" "+have.KernelDigest)
	add("guest agent", k.Agent, have.Agent)
	add("VMM", k.VMM, have.VMM)
	add("accelerator", k.Accel, have.Accel)
	add("network", k.Network, have.Network)
	add("kernel parameters", k.Params, have.Params)
	add("size", fmt.Sprintf("%d CPU, %d MiB, disk %d", k.CPUs, k.MemoryMB, k.DiskBytes), fmt.Sprintf("%d CPU, %d MiB, disk %d", have.CPUs, have.MemoryMB, have.DiskBytes))
	return strings.Join(d, "; ")
}

// Template is one saved guest: a template (made by banger, resumed from
// by VMs of its kind) or a snapshot (of a user's running VM, its RAM in
// the state file, forked from).
type Template struct {
	ID  string `json:"id"`
	Key Key    `json:"key"`
	// Disk is the root disk every clone's overlay is made over.
	Disk vmm.Disk `json:"disk"`
	// Disks, for a snapshot, are the VM's other disks, copied, in order.
	Disks []vmm.Disk `json:"disks,omitempty"`
	// RAM is how the saved VM's RAM was named (see vmm.Memory): "file"
	// or "" (none: qemu's own).
	RAM string `json:"ram,omitempty"`
	// Source is the VM a snapshot was taken of.
	Source string `json:"source,omitempty"`
	// Owner is the uid of the caller that took a snapshot: only it and
	// root see it. Templates are the daemon's (0).
	Owner uint32 `json:"owner,omitempty"`
	// Lent names the lent credentials the saved guest's memory holds
	// (names, never values): a snapshot takes them only when asked to.
	Lent []string `json:"lent,omitempty"`
	// Work is that VM's work record, which its forks inherit.
	Work *api.Work `json:"work,omitempty"`
	// Paused is how long taking the snapshot paused its VM.
	Paused time.Duration `json:"paused,omitempty"`
	// HostKey is the SSH host key fingerprint the saved guest serves
	// until a clone is given its own.
	HostKey   string        `json:"host_key"`
	CreatedAt time.Time     `json:"created_at"`
	BootTook  time.Duration `json:"boot_took"`
	// Dir is where its files are (not stored: it moves on publish).
	Dir string `json:"-"`
}

// Memory is the template's RAM file.
func (t Template) Memory() string { return filepath.Join(t.Dir, MemoryFile) }

// State is the template's device state file.
func (t Template) State() string { return filepath.Join(t.Dir, StateFile) }

// Bytes is what the template's files take on disk (sparse parts not
// counted).
func (t Template) Bytes() int64 {
	var n int64
	es, _ := os.ReadDir(t.Dir)
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
	}
	return n
}

// Missing names the template's files that are gone ("" if none): a
// template someone pruned by hand is not resumed from.
func (t Template) Missing() string {
	var gone []string
	files := []string{MemoryFile, StateFile, WorkFile, filepath.Base(t.Disk.Path)}
	if t.Source != "" {
		files = []string{StateFile, filepath.Base(t.Disk.Path)}
		for _, d := range t.Disks {
			files = append(files, filepath.Base(d.Path))
		}
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(t.Dir, f)); err != nil {
			gone = append(gone, f)
		}
	}
	return strings.Join(gone, ", ")
}

// Dir holds templates, one directory each.
type Dir string

// ErrNone is wrapped by Get when no template has the ID.
var ErrNone = errdefs.ErrNotFound

// Get reads one template (or snapshot: the errors say template, which
// the snapshot commands reword).
func (d Dir) Get(id string) (Template, error) {
	if err := names.Validate("template", id); err != nil {
		return Template{}, err
	}
	dir := filepath.Join(string(d), id)
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return Template{}, fmt.Errorf("template %q does not exist: see `banger template ls`: %w", id, ErrNone)
	}
	if err != nil {
		return Template{}, fmt.Errorf("template %s: %w", id, err)
	}
	var t Template
	if err := json.Unmarshal(b, &t); err != nil {
		return Template{}, fmt.Errorf("template %s: %s is damaged: %w", id, metaFile, err)
	}
	if t.ID != id {
		return Template{}, fmt.Errorf("template %s: %s names %q", id, metaFile, t.ID)
	}
	t.Dir = dir
	t.Disk.Path = filepath.Join(dir, filepath.Base(t.Disk.Path))
	for i := range t.Disks {
		t.Disks[i].Path = filepath.Join(dir, filepath.Base(t.Disks[i].Path))
	}
	return t, nil
}

// List returns every published template, by ID; one whose record cannot
// be read is listed with its error.
func (d Dir) List() ([]Template, map[string]error) {
	es, _ := os.ReadDir(string(d))
	var out []Template
	bad := map[string]error{}
	for _, e := range es {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		t, err := d.Get(e.Name())
		if err != nil {
			bad[e.Name()] = err
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, bad
}

// Build makes the directory a template of id is written into; it is
// invisible until Publish.
func (d Dir) Build(id string) (string, error) {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(string(d), ".build-"+id+"-")
	if err != nil {
		return "", fmt.Errorf("template %s: %w", id, err)
	}
	return dir, nil
}

// Publish writes t's record into build and makes build the template,
// replacing an older template of the same ID.
func (d Dir) Publish(build string, t Template) error {
	t.Disk.Path = filepath.Base(t.Disk.Path)
	t.Disks = append([]vmm.Disk(nil), t.Disks...)
	for i := range t.Disks {
		t.Disks[i].Path = filepath.Base(t.Disks[i].Path)
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(build, metaFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("template %s: %w", t.ID, err)
	}
	_, err = f.Write(append(b, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("template %s: %w", t.ID, err)
	}
	dst := filepath.Join(string(d), t.ID)
	if err := d.Remove(t.ID); err != nil && !errors.Is(err, ErrNone) {
		return err
	}
	if err := os.Rename(build, dst); err != nil {
		return fmt.Errorf("publish template %s: %w", t.ID, err)
	}
	syncDir(string(d))
	return nil
}

// Remove drops a template: renamed out of sight first, so that no clone
// starts from a half-deleted one.
func (d Dir) Remove(id string) error {
	if err := names.Validate("template", id); err != nil {
		return err
	}
	src := filepath.Join(string(d), id)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("template %q does not exist: %w", id, ErrNone)
	}
	gone, err := os.MkdirTemp(string(d), ".rm-"+id+"-")
	if err != nil {
		return err
	}
	if err := os.Rename(src, filepath.Join(gone, id)); err != nil {
		os.Remove(gone)
		return fmt.Errorf("remove template %s: %w", id, err)
	}
	syncDir(string(d))
	return os.RemoveAll(gone)
}

// Sweep removes what a daemon killed while building or removing a
// template left, ending a template's VMM that outlived it: it is found
// by its build directory, which its command line names and no other
// process's does.
func (d Dir) Sweep() (swept []string) {
	es, _ := os.ReadDir(string(d))
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), ".build-") && !strings.HasPrefix(e.Name(), ".rm-") {
			continue
		}
		dir := filepath.Join(string(d), e.Name())
		for _, p := range processesNaming(dir + "/") {
			p.Kill()
		}
		os.RemoveAll(dir)
		swept = append(swept, e.Name())
	}
	return swept
}

// processesNaming returns the processes whose command line holds s.
func processesNaming(s string) []vmm.Process {
	var out []vmm.Process
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmdlines {
		b, err := os.ReadFile(c)
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(c)), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if p, err := vmm.ProcessOf(pid); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
