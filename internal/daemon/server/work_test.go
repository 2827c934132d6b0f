package server

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// failingWork's export writes an entry whose content the sender never
// finishes, then fails: as a disk reader refusing a disk half-way does.
type failingWork struct{ VMs }

func (failingWork) CheckWork(ctx context.Context, name string) error { return nil }
func (failingWork) ExportWork(ctx context.Context, name string, w io.Writer) error {
	tw := tar.NewWriter(w)
	tw.WriteHeader(&tar.Header{Name: "a", Size: 100, Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Write([]byte(strings.Repeat("x", 40)))
	return errors.New("read the disk: name \"..\": the rule")
}

// emptyThenFail writes nothing (an empty write, as a tar writer's flush
// of nothing makes) and fails.
type emptyThenFail struct{ VMs }

func (emptyThenFail) CheckWork(ctx context.Context, name string) error { return nil }
func (emptyThenFail) ExportWork(ctx context.Context, name string, w io.Writer) error {
	w.Write(nil)
	return fmt.Errorf("read the disk: too big: %w", errdefs.ErrInvalid)
}

// An export that fails before its first byte is an error response, even
// after an empty write.
func TestExportErrorBeforeFirstByte(t *testing.T) {
	resp := getWork(t, emptyThenFail{})
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "too big") {
		t.Fatalf("status %d, body %q: want 400 with the error", resp.StatusCode, b)
	}
}

// An export that fails after its first byte says why in the trailer, and
// the body reads as cut short.
func TestExportErrorInTrailer(t *testing.T) {
	resp := getWork(t, failingWork{})
	b, err := io.ReadAll(resp.Body)
	if err != nil || len(b) == 0 {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	if got := resp.Trailer.Get(TrailerError); !strings.Contains(got, "the rule") {
		t.Fatalf("trailer %q", got)
	}
}

// getWork asks a server over vms for vm a1's work.
func getWork(t *testing.T, vms VMs) *http.Response {
	t.Helper()
	s := New(Deps{VMs: vms, Operations: operation.NewRegistry(context.Background()),
		Status: func(context.Context) (api.Status, error) { return api.Status{}, nil },
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/v1/vms/a1/work")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
