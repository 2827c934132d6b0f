package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/workspace"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// fakeWork stands in for the workspace service: a claimed seed is a file
// in the VM's directory.
type fakeWork struct{ discarded []string }

func (f *fakeWork) Claim(_ context.Context, id, vmDir string) (api.Work, error) {
	if id != "seed1" {
		return api.Work{}, fmt.Errorf("seed %s: %w", id, errdefs.ErrNotFound)
	}
	return api.Work{Source: "/src", Base: "abc123", Files: 3}, os.WriteFile(filepath.Join(vmDir, workspace.DiskName), []byte("disk"), 0o600)
}
func (f *fakeWork) Discard(_ context.Context, id string) { f.discarded = append(f.discarded, id) }
func (f *fakeWork) ExportDisk(ctx context.Context, disk string, w io.Writer) error {
	_, err := w.Write([]byte("tar of " + filepath.Base(disk)))
	return err
}
func (f *fakeWork) ExportGuest(ctx context.Context, c *ssh.Client, diskBytes int64, w io.Writer) error {
	return errors.New("no guest here")
}

// A VM with a seed gets the work disk as its second drive, mounted by the
// agent from the command line; its unpulled work keeps it from being
// removed without force.
func TestWorkDiskLifecycle(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, lay := newTestService(t, d)
	fw := &fakeWork{}
	s.d.Work = fw
	ctx := context.Background()
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "bad", Seed: "nope"}, operation.Discard); errdefs.Code(err) != "not_found" {
		t.Fatalf("unknown seed: %v", err)
	}
	if len(fw.discarded) != 1 {
		t.Errorf("a failed create did not discard its seed: %v", fw.discarded)
	}
	if _, err := os.Stat(lay.VM("bad")); err == nil {
		t.Error("a failed create left its directory")
	}
	v, err := s.Create(ctx, api.VMCreateRequest{Name: "w", Seed: "seed1", Start: true}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v.Work == nil || v.Work.Base != "abc123" {
		t.Fatalf("work record: %+v", v.Work)
	}
	cfg := d.started[0]
	if len(cfg.Disks) != 2 || cfg.Disks[1].ID != "work" || cfg.Disks[1].Path != filepath.Join(lay.VM("w"), workspace.DiskName) || cfg.Disks[1].Format != "raw" {
		t.Errorf("disks: %+v", cfg.Disks)
	}
	if !strings.Contains(cfg.Cmdline, guestproto.ParamWork+"=/dev/vdb") {
		t.Errorf("cmdline %q does not mount the work disk", cfg.Cmdline)
	}
	if _, err := s.Stop(ctx, "w", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := contents(s, nil).ExportWork(ctx, "w", &buf); err != nil || buf.String() != "tar of work.ext4" {
		t.Errorf("export of a stopped VM: %q, %v", buf.String(), err)
	}
	if err := s.Remove(ctx, "w", false); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "never pulled") {
		t.Fatalf("rm of unpulled work: %v", err)
	}
	if _, err := contents(s, nil).WorkPulled(ctx, "w", api.WorkPulled{Branch: "banger/w", Commit: "def456"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "w"); got.Work.PulledBranch != "banger/w" || got.Work.PulledAt.IsZero() {
		t.Errorf("pull not recorded: %+v", got.Work)
	}
	if err := s.Remove(ctx, "w", false); err != nil {
		t.Fatalf("rm after pull: %v", err)
	}
	// A VM without a work disk has nothing to export.
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "plain"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if err := contents(s, nil).ExportWork(ctx, "plain", &buf); errdefs.Code(err) != "not_found" {
		t.Errorf("export without a work disk: %v", err)
	}
}
