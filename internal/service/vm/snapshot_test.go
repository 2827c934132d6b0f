package vm

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// A snapshot taken with another VMM build cannot be loaded: a fork of it
// is refused up front, saying which builds, before any disk is made.
func TestForkRefusesAnotherVMMBuild(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, lay := newTestService(t, d)
	snaps := template.Dir(lay.Snapshots())
	build, err := snaps.Build("old")
	if err != nil {
		t.Fatal(err)
	}
	snap := template.Template{ID: "old", Source: "gone", Key: template.Key{Image: "img", Kernel: "k", VMM: "fake 0.9", CPUs: 1, MemoryMB: 256}}
	if err := snaps.Publish(build, snap); err != nil {
		t.Fatal(err)
	}
	_, err = s.Create(context.Background(), api.VMCreateRequest{Name: "f", Snapshot: "old", Start: true}, operation.Discard)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "fake 0.9") || !strings.Contains(err.Error(), "fake fake 1") {
		t.Fatalf("fork of another build's snapshot: %v", err)
	}
	if _, err := os.Stat(lay.VM("f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused fork left its directory: %v", err)
	}
}
