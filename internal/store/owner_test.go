package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// TestOwnersRoundTrip: images and kernels keep who made them and whether
// every caller sees them, and sharing one changes only that.
func TestOwnersRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	tests := []struct {
		name   string
		owner  uint32
		shared bool
	}{
		{"pulled", 1001, true},
		{"private", 1002, false},
		{"roots", 0, false},
	}
	for _, tt := range tests {
		k := testKernel(tt.name)
		k.Owner, k.Shared = tt.owner, tt.shared
		if err := s.InsertKernel(ctx, k); err != nil {
			t.Fatal(err)
		}
		im := api.Image{Name: tt.name, SourceKind: "oci", Kernel: tt.name, CreatedAt: time.Now(), Owner: tt.owner, Shared: tt.shared}
		if err := s.InsertImage(ctx, im); err != nil {
			t.Fatal(err)
		}
		gk, err := s.GetKernel(ctx, tt.name)
		if err != nil || gk.Owner != tt.owner || gk.Shared != tt.shared {
			t.Errorf("kernel %s: owner %d shared %v, %v; want %d %v", tt.name, gk.Owner, gk.Shared, err, tt.owner, tt.shared)
		}
		gi, err := s.GetImage(ctx, tt.name)
		if err != nil || gi.Owner != tt.owner || gi.Shared != tt.shared {
			t.Errorf("image %s: owner %d shared %v, %v; want %d %v", tt.name, gi.Owner, gi.Shared, err, tt.owner, tt.shared)
		}
	}
	if err := s.ShareKernel(ctx, "private"); err != nil {
		t.Fatal(err)
	}
	if err := s.ShareImage(ctx, "private"); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.GetKernel(ctx, "private"); !k.Shared || k.Owner != 1002 {
		t.Errorf("shared kernel = owner %d shared %v", k.Owner, k.Shared)
	}
	if im, _ := s.GetImage(ctx, "private"); !im.Shared || im.Owner != 1002 {
		t.Errorf("shared image = owner %d shared %v", im.Owner, im.Shared)
	}
	if err := s.ShareKernel(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("share of a missing kernel: %v", err)
	}
	if err := s.ShareImage(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("share of a missing image: %v", err)
	}
}

// TestOldKernelsAreRootsAndShared: what was pulled before owners were
// recorded stays seen by everyone.
func TestOldKernelsAreRootsAndShared(t *testing.T) {
	path := v1Database(t)
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.GetKernel(context.Background(), "old-kernel")
	if err != nil || k.Owner != 0 || !k.Shared {
		t.Fatalf("migrated kernel: owner %d shared %v, %v", k.Owner, k.Shared, err)
	}
}
