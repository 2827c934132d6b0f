package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/vmm"
)

// qemuImg runs qemu-img through the driver's Runner.
func (d *Driver) qemuImg(ctx context.Context, args ...string) ([]byte, error) {
	r := d.Runner
	if r == nil {
		r = runner.Exec{}
	}
	return r.Run(ctx, runner.Cmd{Name: "qemu-img", Args: args})
}

// Overlay implements vmm.Driver with a qcow2 file whose backing file is
// base: about 20 ms whatever the size (bench/vm.sh). No size is given:
// the overlay takes its base's.
func (d *Driver) Overlay(ctx context.Context, base, baseFormat, path string) (vmm.Disk, error) {
	if _, err := d.qemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, path); err != nil {
		return vmm.Disk{}, fmt.Errorf("create a disk overlay over %s: %w", filepath.Base(base), err)
	}
	return vmm.Disk{ID: "root", Path: path, Format: "qcow2"}, nil
}

// Backing implements vmm.Driver from qemu-img info.
func (d *Driver) Backing(ctx context.Context, path string) (string, string, error) {
	out, err := d.qemuImg(ctx, "info", "--output=json", path)
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	var info struct {
		Backing string `json:"full-backing-filename"`
		Format  string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", "", fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if info.Backing != "" && info.Format == "" {
		info.Format = "raw"
	}
	return info.Backing, info.Format, nil
}

// Rebase implements vmm.Driver with an unsafe rebase: only the name in
// the overlay's header changes, since the content is the same.
func (d *Driver) Rebase(ctx context.Context, path, backing, format string) error {
	if _, err := d.qemuImg(ctx, "rebase", "-u", "-F", format, "-b", backing, path); err != nil {
		return fmt.Errorf("point %s at %s: %w", filepath.Base(path), filepath.Base(backing), err)
	}
	return nil
}

// Flatten implements vmm.Driver with qemu-img convert, which skips zeroed
// blocks: the result is sparse.
func (d *Driver) Flatten(ctx context.Context, disk vmm.Disk, dst string) error {
	if _, err := d.qemuImg(ctx, "convert", "-q", "-f", disk.Format, "-O", "raw", disk.Path, dst); err != nil {
		return fmt.Errorf("flatten %s: %w", filepath.Base(disk.Path), err)
	}
	return nil
}
