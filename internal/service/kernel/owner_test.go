package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func as(uid uint32) context.Context {
	return peer.AsUID(context.Background(), uid)
}

// importAs imports the test vmlinuz as name, the way a client would.
func (h *harness) importAs(ctx context.Context, t *testing.T, name string, shared bool) (api.Kernel, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(path, vmlinuz(t), 0o644); err != nil {
		t.Fatal(err)
	}
	req := api.KernelImportRequest{Name: name, Kernel: h.uploadAs(ctx, t, path, false), Shared: shared}
	if err := h.svc.CheckImport(ctx, req); err != nil {
		return api.Kernel{}, err
	}
	return h.svc.Import(ctx, req, operation.Discard)
}

func kernelNames(t *testing.T, s *Service, ctx context.Context) string {
	t.Helper()
	ks, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range ks {
		out = append(out, k.Name)
	}
	return strings.Join(out, ",")
}

// TestPrivateKernels: a kernel a user imported is its own until shared:
// to another user it does not exist (list, get, ensure, rm, hints), root
// sees it, and sharing shows it to everyone.
func TestPrivateKernels(t *testing.T) {
	h := newHarness(t)
	alice, bob, root := as(1001), as(1002), as(0)
	k, err := h.importAs(alice, t, "mine", false)
	if err != nil || k.Owner != 1001 || k.Shared {
		t.Fatalf("import: %+v, %v", k, err)
	}
	if _, err := h.importAs(alice, t, "ours", true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.importAs(root, t, "roots", false); err != nil {
		t.Fatal(err)
	}

	_, hidden := h.svc.Get(bob, "mine")
	_, hiddenEnsure := h.svc.Ensure(bob, "mine", operation.Discard)
	want := `no local kernel named "mine" (see ` + "`banger kernel ls`, or pull one with `banger kernel pull NAME`" + `)`
	if !errors.Is(hidden, errdefs.ErrNotFound) || errdefs.Message(hidden) != want {
		t.Errorf("bob gets alice's private kernel: %v, want %q", hidden, want)
	}
	if _, err := h.svc.Get(bob, "mune"); strings.Contains(err.Error(), `"mine"`) {
		t.Errorf("bob's hint names alice's private kernel: %v", err)
	}
	if _, err := h.svc.Get(alice, "mune"); !strings.Contains(err.Error(), `did you mean "mine"`) {
		t.Errorf("alice's own kernel is not hinted: %v", err)
	}

	assertSees(t, h.svc, []seesCase{
		{"owner", alice, "mine,ours"},
		{"another user", bob, "ours"},
		{"root", root, "mine,ours,roots"},
	})

	if n, _ := h.svc.Count(bob); n != 1 {
		t.Errorf("bob counts %d kernels", n)
	}
	if err := h.svc.Remove(bob, "mine"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob removes alice's private kernel: %v", err)
	}
	if _, err := h.importAs(bob, t, "mine", false); !errors.Is(err, errdefs.ErrConflict) || errdefs.Message(err) != `kernel name "mine" is not available: pick another name` {
		t.Errorf("bob imports alice's name: %v", err)
	}
	if _, err := h.svc.Share(bob, "mine"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob shares alice's private kernel: %v", err)
	}

	if k, err := h.svc.Share(alice, "mine"); err != nil || !k.Shared {
		t.Fatalf("share: %+v, %v", k, err)
	}
	if got := kernelNames(t, h.svc, bob); got != "mine,ours" {
		t.Errorf("bob lists %s after alice shared", got)
	}
	if err := h.svc.Remove(bob, "mine"); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("bob removes alice's shared kernel: %v", err)
	}
	if err := h.svc.Remove(alice, "mine"); err != nil {
		t.Errorf("alice removes her kernel: %v", err)
	}
	// What bob got for alice's private kernel is what he gets for a name
	// nobody has.
	if _, absent := h.svc.Get(bob, "mine"); absent.Error() != hidden.Error() {
		t.Errorf("get of a hidden kernel: %v\nof an absent one: %v", hidden, absent)
	}
	if _, absent := h.svc.Ensure(bob, "mine", operation.Discard); absent.Error() != hiddenEnsure.Error() {
		t.Errorf("ensure of a hidden kernel: %v\nof an absent one: %v", hiddenEnsure, absent)
	}
	if err := h.svc.Remove(root, "ours"); err != nil {
		t.Errorf("root removes alice's kernel: %v", err)
	}
	h.assertClean(t, "roots")
}

// seesCase is which of the kernels "mine", "ours" and "roots" a caller
// sees, in list order.
type seesCase struct {
	who  string
	ctx  context.Context
	sees string
}

// assertSees checks that each caller lists, gets and ensures the kernels
// it sees, and no other.
func assertSees(t *testing.T, svc *Service, tests []seesCase) {
	t.Helper()
	for _, tt := range tests {
		if got := kernelNames(t, svc, tt.ctx); got != tt.sees {
			t.Errorf("%s lists %s, want %s", tt.who, got, tt.sees)
		}
		for _, name := range []string{"mine", "ours", "roots"} {
			sees := strings.Contains(tt.sees, name)
			if _, err := svc.Get(tt.ctx, name); (err == nil) != sees {
				t.Errorf("%s gets %s: %v", tt.who, name, err)
			}
			if _, err := svc.Ensure(tt.ctx, name, operation.Discard); (err == nil) != sees {
				t.Errorf("%s ensures %s: %v", tt.who, name, err)
			}
		}
	}
}

// TestKernelCatalogNamesAreTheCatalogs: an import may not take a catalog
// name; pulled kernels are shared and anyone's to remove; a catalog name
// another user's kernel holds all the same is neither pulled over nor
// shown.
func TestKernelCatalogNamesAreTheCatalogs(t *testing.T) {
	h := newHarness(t)
	alice, bob := as(1001), as(1002)
	src := api.KernelSource{Kind: api.SourceURL, URL: h.serve("/vmlinuz", vmlinuz(t)), SHA256: sum(vmlinuz(t))}
	h.entry("cat", src)
	if _, err := h.importAs(alice, t, "cat", false); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "belongs to the kernel catalog") {
		t.Fatalf("import of a catalog name: %v", err)
	}
	k, err := h.svc.Pull(alice, "cat", operation.Discard)
	if err != nil || k.Owner != 1001 || !k.Shared {
		t.Fatalf("pull: %+v, %v", k, err)
	}
	if err := h.svc.Remove(bob, "cat"); err != nil {
		t.Fatalf("bob removes a pulled kernel: %v", err)
	}

	if _, err := h.importAs(alice, t, "later", false); err != nil {
		t.Fatal(err)
	}
	h.entry("later", src)
	hits := h.hits.Load()
	if _, err := h.svc.Ensure(bob, "later", operation.Discard); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob ensures a catalog name alice's kernel holds: %v", err)
	}
	if _, err := h.svc.Pull(bob, "later", operation.Discard); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("bob pulls a catalog name alice's kernel holds: %v", err)
	}
	if n := h.hits.Load(); n != hits {
		t.Errorf("pulled over alice's kernel (%d downloads)", n-hits)
	}
	if k, err := h.svc.Get(alice, "later"); err != nil || k.SourceKind != sourceImport {
		t.Errorf("alice's kernel after bob's tries: %+v, %v", k, err)
	}
	es, _ := h.svc.Catalog(bob)
	for _, e := range es {
		if e.Name == "later" && e.Local {
			t.Error("bob's catalog says alice's private kernel is local")
		}
	}
}

// TestKernelInUseHidesOthersVMs: rm of a kernel in use names the caller's
// VMs and snapshots and only counts other users'.
func TestKernelInUseHidesOthersVMs(t *testing.T) {
	h := newHarness(t)
	src := api.KernelSource{Kind: api.SourceURL, URL: h.serve("/vmlinuz", vmlinuz(t)), SHA256: sum(vmlinuz(t))}
	h.entry("cat", src)
	if _, err := h.svc.Pull(as(1002), "cat", operation.Discard); err != nil {
		t.Fatal(err)
	}
	h.users["cat"] = []api.Dependent{
		{Kind: "vm", Name: "alices-vm", Owner: 1001},
		{Kind: "vm", Name: "bobs-vm", Owner: 1002},
		{Kind: "snapshot", Name: "bobs-snap", Owner: 1002},
	}
	tests := []struct {
		who       string
		ctx       context.Context
		want      string
		forbidden string
	}{
		{"alice", as(1001), `vm "alices-vm", 1 VM of another user and 1 snapshot of another user`, "bobs"},
		{"bob", as(1002), `vm "bobs-vm", snapshot "bobs-snap" and 1 VM of another user`, "alices"},
		{"root", as(0), `vm "alices-vm", vm "bobs-vm" and snapshot "bobs-snap"`, "another user"},
	}
	for _, tt := range tests {
		err := h.svc.Remove(tt.ctx, "cat")
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.forbidden) {
			t.Errorf("%s: %v, want %q without %q", tt.who, err, tt.want, tt.forbidden)
		}
	}
}
