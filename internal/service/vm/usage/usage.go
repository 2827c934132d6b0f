// Package usage answers which VMs and snapshots use an image or a kernel,
// from the store and the saved states on disk, and drops the templates
// of one that is removed. The image and kernel services ask it before a
// removal; it needs nothing of the VM service, so the three are built in
// order, with no cycle between them.
package usage

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

// VMs lists every VM record.
type VMs interface {
	ListVMs(ctx context.Context) ([]store.VM, error)
}

// Usage answers for the VMs in Store and the snapshots and templates in
// their directories ("" Templates: templates are off).
type Usage struct {
	Store     VMs
	Snapshots template.Dir
	Templates template.Dir
	Log       *slog.Logger
}

// VMsUsingKernel lists the VMs booting kernel, and the snapshots taken
// with it, with their owners (every owner's: the caller decides what it
// may name), so that kernel rm can refuse while any exists.
func (u Usage) VMsUsingKernel(ctx context.Context, kernel string) ([]api.Dependent, error) {
	return u.dependents(ctx, "kernel "+kernel, func(_, k string) bool { return k == kernel })
}

// VMsUsingImage lists the VMs whose disks come from image, and the
// snapshots of such VMs, with their owners, so that image rm can refuse
// while any exists.
func (u Usage) VMsUsingImage(ctx context.Context, image string) ([]api.Dependent, error) {
	return u.dependents(ctx, "image "+image, func(i, _ string) bool { return i == image })
}

func (u Usage) dependents(ctx context.Context, what string, uses func(image, kernel string) bool) ([]api.Dependent, error) {
	vs, err := u.Store.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("vms using %s: %w", what, err)
	}
	var ds []api.Dependent
	for _, v := range vs {
		if uses(v.Image, v.Kernel) {
			ds = append(ds, api.Dependent{Kind: "vm", Name: v.Name, Owner: v.Owner})
		}
	}
	if u.Snapshots != "" {
		snaps, _ := u.Snapshots.List()
		for _, t := range snaps {
			if uses(t.Key.Image, t.Key.Kernel) {
				ds = append(ds, api.Dependent{Kind: "snapshot", Name: t.ID, Owner: t.Owner})
			}
		}
	}
	return ds, nil
}

// ForgetImage drops the templates of a removed image. No template of it
// is being made meanwhile: making one is a VM start, and that VM's record
// made the removal refuse.
func (u Usage) ForgetImage(ctx context.Context, image string) {
	u.forget(func(k template.Key) bool { return k.Image == image })
}

// ForgetKernel drops the templates of a removed kernel.
func (u Usage) ForgetKernel(ctx context.Context, kernel string) {
	u.forget(func(k template.Key) bool { return k.Kernel == kernel })
}

func (u Usage) forget(match func(template.Key) bool) {
	if u.Templates == "" {
		return
	}
	ts, _ := u.Templates.List()
	for _, t := range ts {
		if !match(t.Key) {
			continue
		}
		if err := u.Templates.Remove(t.ID); err != nil {
			u.Log.Warn("remove template", "template", t.ID, "err", err)
			continue
		}
		u.Log.Info("removed template", "template", t.ID)
	}
}
