package qemu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// The disk operations against real qemu-img: an overlay reads through to
// its base, keeps its own writes, is pointed at a link of the base, and
// flattens into one raw file holding both.
func TestDiskFiles(t *testing.T) {
	testkit.NeedTools(t, "qemu-utils", "qemu-img", "qemu-io")
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, bytes.Repeat([]byte{0xba}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Driver{}
	ov, err := d.Overlay(ctx, base, "raw", filepath.Join(dir, "root.qcow2"))
	if err != nil || ov.Format != "qcow2" || ov.ID != "root" {
		t.Fatalf("overlay %+v, %v", ov, err)
	}
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xcc 0 4k", ov.Path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	if b, f, err := d.Backing(ctx, ov.Path); err != nil || b != base || f != "raw" {
		t.Fatalf("backing %q %q, %v", b, f, err)
	}
	link := filepath.Join(dir, "link.raw")
	if err := os.Link(base, link); err != nil {
		t.Fatal(err)
	}
	if err := d.Rebase(ctx, ov.Path, link, "raw"); err != nil {
		t.Fatal(err)
	}
	if b, _, err := d.Backing(ctx, ov.Path); err != nil || b != link {
		t.Fatalf("after rebase: backing %q, %v", b, err)
	}
	if b, f, err := d.Backing(ctx, base); err != nil || b != "" || f != "" {
		t.Errorf("a raw file's backing: %q %q, %v", b, f, err)
	}
	flat := filepath.Join(dir, "flat.raw")
	if err := d.Flatten(ctx, ov, flat); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(flat)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte{0xcc}, 4096), bytes.Repeat([]byte{0xba}, 1<<20-4096)...)
	if !bytes.Equal(got, want) {
		t.Errorf("flattened %d bytes, not the overlay's write over its base", len(got))
	}
	if _, err := d.Overlay(ctx, filepath.Join(dir, "none.raw"), "raw", filepath.Join(dir, "x.qcow2")); err == nil {
		t.Error("an overlay over a missing base was made")
	}
}
