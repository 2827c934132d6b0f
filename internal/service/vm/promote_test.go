package vm

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestPromote(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	var adopted []api.Image
	rec := &runner.Recorder{}
	s.d.Images = fakeImages{disk: s.d.Images.(fakeImages).disk, adopted: &adopted}
	s.d.Runner = rec
	w := contents(s, fakeGuestDisks{t})
	ctx := context.Background()
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "base", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  api.ImagePromoteRequest
		code string
		want string
	}{
		{"running", api.ImagePromoteRequest{Name: "new", VM: "base"}, "conflict", "stop it first"},
		{"no such vm", api.ImagePromoteRequest{Name: "new", VM: "nope"}, "not_found", "nope"},
		{"image exists", api.ImagePromoteRequest{Name: "img", VM: "base"}, "conflict", "already exists"},
		{"bad image name", api.ImagePromoteRequest{Name: "../x", VM: "base"}, "invalid", "not valid"},
	} {
		if _, err := w.Promote(ctx, tt.req, operation.Discard); errdefs.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v (%s), want %s with %q", tt.name, err, errdefs.Code(err), tt.code, tt.want)
		}
	}
	if len(adopted) != 0 || len(rec.Calls()) != 0 || len(d.flattened) != 0 {
		t.Fatalf("refused promotes did work: %v %v %v", adopted, rec.Calls(), d.flattened)
	}
	if _, err := s.Stop(ctx, "base", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	im, err := w.Promote(ctx, api.ImagePromoteRequest{Name: "new", VM: "base"}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if im.Name != "new" || im.Kernel != "k" || !strings.Contains(im.Source, "vm base") || len(adopted) != 1 {
		t.Errorf("promoted %+v (adopted %v)", im, adopted)
	}
	if len(d.flattened) != 1 || filepath.Base(d.flattened[0]) != vmdisk.RootRaw {
		t.Fatalf("the root disk was not flattened: %v", d.flattened)
	}
}

// fakeGuestDisks answers every read with one file.
type fakeGuestDisks struct{ t testing.TB }

func (f fakeGuestDisks) Tar(ctx context.Context, disk string, o ext4read.Options, w io.Writer) (ext4read.Skipped, error) {
	_, err := w.Write(testkit.Tar(f.t, []testkit.TarSpec{{Name: "etc/hostname", Body: "base\n"}}))
	return ext4read.Skipped{}, err
}
