package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "banger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testKernel(name string) api.Kernel {
	return api.Kernel{
		Name: name, Version: "6.1", Arch: "x86_64", SourceKind: "deb", Source: "deb https://x/y.deb",
		Digest: "sha256:abc", Release: "6.1.0-56-amd64", Modules: true,
		Files:     []api.KernelFile{{Name: "vmlinux", Size: 10, SHA256: "aa"}, {Name: "vmlinuz", Size: 5, SHA256: "bb"}},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestFreshDatabaseIsWALAtNewestSchema(t *testing.T) {
	s := openTest(t)
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v != len(migrations) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(migrations))
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestMigrateFromVersion1KeepsRows(t *testing.T) {
	path := v1Database(t)

	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("migrate v1 database: %v", err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(context.Background()); v != len(migrations) {
		t.Fatalf("schema version after migration = %d, want %d", v, len(migrations))
	}
	k, err := s.GetKernel(context.Background(), "old-kernel")
	if err != nil {
		t.Fatalf("kernel from v1 lost: %v", err)
	}
	if k.Version != "5.10" || k.Modules || k.Release != "" || len(k.Files) != 0 {
		t.Fatalf("migrated kernel = %+v", k)
	}
	if !k.CreatedAt.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("created_at = %v", k.CreatedAt)
	}
	// The new columns work on the migrated database.
	if err := s.InsertKernel(context.Background(), testKernel("new")); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "future.db")
	raw, _ := sql.Open("sqlite", "file:"+path)
	if _, err := raw.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if _, err := Open(context.Background(), path); err == nil {
		t.Fatal("opened a database from a newer banger")
	}
}

func TestKernelRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	want := testKernel("k1")
	if err := s.InsertKernel(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertKernel(ctx, want); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("second insert: %v, want conflict", err)
	}
	got, err := s.GetKernel(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 15 || len(got.Files) != 2 || got.Release != want.Release || !got.Modules || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("got %+v", got)
	}
	if n, _ := s.CountKernels(ctx); n != 1 {
		t.Fatalf("count = %d", n)
	}
	if err := s.DeleteKernel(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKernel(ctx, "k1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.DeleteKernel(ctx, "k1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	var files int
	s.db.QueryRow("SELECT count(*) FROM kernel_files").Scan(&files)
	if files != 0 {
		t.Fatalf("%d kernel_files rows left after delete", files)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := testKernel("k" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
			errs <- s.InsertKernel(ctx, k)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.CountKernels(ctx); n != 40 {
		t.Fatalf("count = %d", n)
	}
}

func TestImageRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	im := api.Image{Name: "deb", SourceKind: "oci", Source: "docker.io/library/debian:bookworm", Digest: "sha256:1", Kernel: "k", Size: 10, Layers: 1, Files: 3, CreatedAt: time.Now()}
	if err := s.InsertImage(ctx, im); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertImage(ctx, im); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	got, err := s.GetImage(ctx, "deb")
	if err != nil || got.Source != im.Source || got.Layers != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	if users, _ := s.ImagesUsingKernel(ctx, "k"); len(users) != 1 {
		t.Fatalf("users = %v", users)
	}
	if err := s.DeleteImage(ctx, "deb"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetImage(ctx, "deb"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatal(err)
	}
}

func TestVMRoundTripAndUsers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	v := VM{
		VM: api.VM{Name: "web", Image: "debian-bookworm", Kernel: "k1", CPUs: 2, MemoryMB: 1024, DiskBytes: 4 << 30,
			SSHPort: 40022, Ports: []api.PortForward{{HostPort: 8080, GuestPort: 80}}, State: api.VMStopped,
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), MadeBy: &api.MadeBy{Tool: "mcp", Checkout: "/home/u/repo"}},
		ID: "ab12cd34", AuthorizedKeys: []string{"ssh-ed25519 AAAA u@h"},
	}
	if err := s.InsertVM(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertVM(ctx, v); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("second insert of the same name: %v, want conflict", err)
	}
	v.State, v.PID, v.PIDStart, v.HostKey, v.ConsoleOffset = api.VMRunning, 1234, 1<<40, "SHA256:x", 99
	v.StartedAt = time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)
	if err := s.UpdateVM(ctx, v); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetVM(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != api.VMRunning || got.PID != 1234 || got.PIDStart != 1<<40 || got.HostKey != "SHA256:x" ||
		got.ConsoleOffset != 99 || len(got.Ports) != 1 || got.Ports[0].GuestPort != 80 || got.AuthorizedKeys[0] != v.AuthorizedKeys[0] ||
		!got.StartedAt.Equal(v.StartedAt) || !got.CreatedAt.Equal(v.CreatedAt) || got.DiskBytes != 4<<30 ||
		got.MadeBy == nil || *got.MadeBy != *v.MadeBy || got.Work != nil {
		t.Fatalf("round trip: %+v", got)
	}
	for _, c := range []struct{ col, name string }{{"image", "debian-bookworm"}, {"kernel", "k1"}} {
		if us, err := s.VMsUsing(ctx, c.col, c.name); err != nil || len(us) != 1 || us[0] != "web" {
			t.Errorf("VMsUsing(%s, %s) = %v, %v", c.col, c.name, us, err)
		}
	}
	if us, _ := s.VMsUsing(ctx, "image", "other"); len(us) != 0 {
		t.Errorf("VMsUsing(other) = %v", us)
	}
	if _, err := s.VMsUsing(ctx, "name; DROP TABLE vms", "x"); err == nil {
		t.Error("VMsUsing accepted a column it must not")
	}
	if err := s.DeleteVM(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetVM(ctx, "web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.UpdateVM(ctx, v); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update after delete: %v", err)
	}
}

// v1Database writes a database as banger's first schema left it
// (testdata/schema-v1.sql) and returns its path.
func v1Database(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "old.db")
	script, err := os.ReadFile("testdata/schema-v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
	return path
}
