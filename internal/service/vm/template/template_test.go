package template

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/vmm"
)

var key = Key{Image: "debian-bookworm", ImageDigest: "sha256:aa", Kernel: "k", KernelDigest: "sha256:bb", Agent: "sha256:cc",
	VMM: "qemu 7.2", Accel: "tcg max", Network: "passt", CPUs: 2, MemoryMB: 1024, DiskBytes: 10 << 30}

func TestKeyID(t *testing.T) {
	id := key.ID()
	if !strings.HasPrefix(id, "debian-bookworm-2c-1024m-") || names.Validate("template", id) != nil {
		t.Errorf("ID %q", id)
	}
	// What a VM asks for picks the template; the builds do not, so that
	// a template of another build is found and refused.
	other := key
	other.VMM, other.Agent, other.ImageDigest = "qemu 8.2", "sha256:dd", "sha256:ee"
	if other.ID() != id {
		t.Errorf("builds changed the ID: %s, %s", other.ID(), id)
	}
	for _, change := range []func(*Key){
		func(k *Key) { k.CPUs = 1 }, func(k *Key) { k.MemoryMB = 512 }, func(k *Key) { k.DiskBytes = 1 << 30 },
		func(k *Key) { k.Image = "alpine" }, func(k *Key) { k.Kernel = "k2" }, func(k *Key) { k.Init = "systemd" },
	} {
		k := key
		change(&k)
		if k.ID() == id {
			t.Errorf("%+v has the same ID as %+v", k, key)
		}
	}
	// banger's own init keeps the IDs templates had before init systems;
	// systemd's say so.
	if !strings.HasPrefix(id, "debian-bookworm-2c-1024m-") || strings.Count(id, "-") != 4 {
		t.Errorf("banger's init changed the ID's form: %s", id)
	}
	sd := key
	sd.Init = "systemd"
	if got := sd.ID(); !strings.HasPrefix(got, "debian-bookworm-2c-1024m-systemd-") || names.Validate("template", got) != nil {
		t.Errorf("a systemd template's ID: %s", got)
	}
	long := key
	long.Image = strings.Repeat("a", names.MaxLen)
	if err := names.Validate("template", long.ID()); err != nil {
		t.Errorf("a long image name's template ID: %v", err)
	}
	long.Init = "systemd"
	if err := names.Validate("template", long.ID()); err != nil {
		t.Errorf("a long image name's systemd template ID: %v", err)
	}
}

func TestKeyDiff(t *testing.T) {
	if d := key.Diff(key); d != "" {
		t.Errorf("a key differs from itself: %s", d)
	}
	other := key
	other.VMM = "qemu 1.0"
	if d := key.Diff(other); !strings.Contains(d, `VMM "qemu 1.0", not "qemu 7.2"`) {
		t.Errorf("diff %q", d)
	}
}

// build writes a template's files as the VM service would.
func build(t *testing.T, d Dir) (string, Template) {
	dir, err := d.Build(key.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{MemoryFile, StateFile, WorkFile, "root.qcow2"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, Template{ID: key.ID(), Key: key, Disk: vmm.Disk{ID: "root", Path: filepath.Join(dir, "root.qcow2"), Format: "qcow2"}, HostKey: "SHA256:x", CreatedAt: time.Now().UTC()}
}

func TestPublishGetRemove(t *testing.T) {
	d := Dir(t.TempDir())
	dir, tp := build(t, d)
	if ts, _ := d.List(); len(ts) != 0 {
		t.Fatalf("a template being built is listed: %+v", ts)
	}
	if err := d.Publish(dir, tp); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(tp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != key || got.HostKey != "SHA256:x" || got.Disk.Path != filepath.Join(string(d), tp.ID, "root.qcow2") || got.Missing() != "" || got.Bytes() == 0 {
		t.Errorf("got %+v (missing %q)", got, got.Missing())
	}
	// A newer one of the same ID replaces it.
	dir2, tp2 := build(t, d)
	tp2.HostKey = "SHA256:y"
	if err := d.Publish(dir2, tp2); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Get(tp.ID); got.HostKey != "SHA256:y" {
		t.Errorf("after a second publish: %+v", got)
	}
	os.Remove(filepath.Join(string(d), tp.ID, MemoryFile))
	if got, _ := d.Get(tp.ID); got.Missing() != MemoryFile {
		t.Errorf("missing = %q", got.Missing())
	}
	if err := d.Remove(tp.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(tp.ID); !errors.Is(err, ErrNone) {
		t.Errorf("after remove: %v", err)
	}
	if err := d.Remove(tp.ID); !errors.Is(err, ErrNone) {
		t.Errorf("second remove: %v", err)
	}
	if es, _ := os.ReadDir(string(d)); len(es) != 0 {
		t.Errorf("left: %v", es)
	}
	if _, err := d.Get("../x"); err == nil {
		t.Error("a path as an ID was taken")
	}
}

func TestDamagedRecord(t *testing.T) {
	d := Dir(t.TempDir())
	os.MkdirAll(filepath.Join(string(d), "bad"), 0o700)
	os.WriteFile(filepath.Join(string(d), "bad", metaFile), []byte("{"), 0o600)
	ts, bad := d.List()
	if len(ts) != 0 || bad["bad"] == nil || !strings.Contains(bad["bad"].Error(), "damaged") {
		t.Errorf("list: %v, %v", ts, bad)
	}
}

// A daemon killed while a template's VMM ran left both: the next one
// ends the VMM and removes the directory.
func TestSweep(t *testing.T) {
	d := Dir(t.TempDir())
	dir, _ := build(t, d)
	// A stand-in whose command line names the build directory.
	vmmProc := exec.Command("tail", "-f", filepath.Join(dir, MemoryFile))
	if err := vmmProc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { vmmProc.Wait(); close(exited) }()
	defer vmmProc.Process.Kill()
	keep, tp := build(t, d)
	if err := d.Publish(keep, tp); err != nil {
		t.Fatal(err)
	}
	swept := d.Sweep()
	if len(swept) != 1 || !strings.HasPrefix(swept[0], ".build-") {
		t.Errorf("swept %v", swept)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the unfinished template's VMM still runs")
	}
	if _, err := d.Get(tp.ID); err != nil {
		t.Errorf("a published template was swept: %v", err)
	}
}
