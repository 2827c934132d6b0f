package image

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// fakeUsers says which VMs and snapshots use each image.
type fakeUsers map[string][]api.Dependent

func (f fakeUsers) VMsUsingImage(_ context.Context, im string) ([]api.Dependent, error) {
	return f[im], nil
}
func (f fakeUsers) ForgetImage(context.Context, string) {}

func as(uid uint32) context.Context {
	return peer.AsUID(context.Background(), uid)
}

// disk makes a small clean ext4 file.
func disk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", p, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return p
}

// register registers a copy of path as name, the way a client would.
func (h *harness) register(ctx context.Context, t *testing.T, path, name string, shared bool) (api.Image, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, err := h.uploads.Put(ctx, f, upload.File)
	if err != nil {
		t.Fatal(err)
	}
	req := api.ImageRegisterRequest{Name: name, Rootfs: u.ID, Shared: shared}
	if err := h.svc.CheckRegister(ctx, req); err != nil {
		return api.Image{}, err
	}
	return h.svc.Register(ctx, req, operation.Discard)
}

func listed(t *testing.T, s *Service, ctx context.Context) []string {
	t.Helper()
	ims, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, im := range ims {
		out = append(out, im.Name)
	}
	return out
}

// TestPrivateImages: an image a user registered is its own until shared:
// to another user it does not exist (list, get, ensure, rm, hints), root
// sees it, and sharing shows it to everyone.
func TestPrivateImages(t *testing.T) {
	h := newHarness(t)
	alice, bob, root := as(1001), as(1002), as(0)
	d := disk(t)
	im, err := h.register(alice, t, d, "mine", false)
	if err != nil || im.Owner != 1001 || im.Shared {
		t.Fatalf("register: %+v, %v", im, err)
	}
	if _, err := h.register(alice, t, d, "ours", true); err != nil {
		t.Fatal(err)
	}

	// What bob gets for alice's private image is what he gets for a name
	// nobody has: checked again once alice removed it.
	_, hidden := h.svc.Get(bob, "mine")
	_, hiddenEnsure := h.svc.Ensure(bob, "mine", operation.Discard)
	_, absent := h.svc.Get(bob, "mune")
	want := `no local image named "mine" (see ` + "`banger image catalog` and `banger image ls`" + `)`
	if !errors.Is(hidden, errdefs.ErrNotFound) || errdefs.Message(hidden) != want {
		t.Errorf("bob gets alice's private image: %v, want %q", hidden, want)
	}
	if !errors.Is(absent, errdefs.ErrNotFound) || strings.Contains(absent.Error(), `"mine"`) {
		t.Errorf("bob's hint names alice's private image: %v", absent)
	}
	if _, err := h.svc.Get(alice, "mune"); !strings.Contains(err.Error(), `did you mean "mine"`) {
		t.Errorf("alice's own image is not hinted: %v", err)
	}

	assertSees(t, h.svc, []seesCase{
		{"owner", alice, []string{"mine", "ours"}},
		{"another user", bob, []string{"ours"}},
		{"root", root, []string{"mine", "ours"}},
	})
	if n, _ := h.svc.Count(bob); n != 1 {
		t.Errorf("bob counts %d images", n)
	}

	// Bob can neither remove nor take the name, and learns nothing of it.
	if err := h.svc.Remove(bob, "mine"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob removes alice's private image: %v", err)
	}
	if _, err := h.register(bob, t, d, "mine", false); !errors.Is(err, errdefs.ErrConflict) || errdefs.Message(err) != `image name "mine" is not available: pick another name` {
		t.Errorf("bob registers alice's name: %v", err)
	}
	// Nor may he share it.
	if _, err := h.svc.Share(bob, "mine"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob shares alice's private image: %v", err)
	}

	// Shared, bob sees it but may not remove what alice made.
	if im, err := h.svc.Share(alice, "mine"); err != nil || !im.Shared {
		t.Fatalf("share: %+v, %v", im, err)
	}
	if _, err := h.svc.Get(bob, "mine"); err != nil {
		t.Errorf("bob does not see the shared image: %v", err)
	}
	if err := h.svc.Remove(bob, "mine"); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("bob removes alice's shared image: %v", err)
	}
	if err := h.svc.Remove(alice, "mine"); err != nil {
		t.Errorf("alice removes her image: %v", err)
	}
	if _, absent := h.svc.Get(bob, "mine"); absent.Error() != hidden.Error() {
		t.Errorf("get of a hidden image: %v\nof an absent one: %v", hidden, absent)
	}
	if _, absent := h.svc.Ensure(bob, "mine", operation.Discard); absent.Error() != hiddenEnsure.Error() {
		t.Errorf("ensure of a hidden image: %v\nof an absent one: %v", hiddenEnsure, absent)
	}
	if err := h.svc.Remove(root, "ours"); err != nil {
		t.Errorf("root removes alice's image: %v", err)
	}
	h.assertClean(t)
}

// seesCase is which of the images "mine" and "ours" a caller sees.
type seesCase struct {
	who  string
	ctx  context.Context
	sees []string
}

// assertSees checks that each caller lists, gets and ensures the images
// it sees, and no other.
func assertSees(t *testing.T, svc *Service, tests []seesCase) {
	t.Helper()
	for _, tt := range tests {
		if got := strings.Join(listed(t, svc, tt.ctx), ","); got != strings.Join(tt.sees, ",") {
			t.Errorf("%s lists %s, want %v", tt.who, got, tt.sees)
		}
		for _, name := range []string{"mine", "ours"} {
			sees := strings.Contains(strings.Join(tt.sees, ","), name)
			if _, err := svc.Get(tt.ctx, name); (err == nil) != sees {
				t.Errorf("%s gets %s: %v", tt.who, name, err)
			}
			if _, err := svc.Ensure(tt.ctx, name, operation.Discard); (err == nil) != sees {
				t.Errorf("%s ensures %s: %v", tt.who, name, err)
			}
		}
	}
}

// TestPromotedImagesAreOwned: Adopt (image promote) makes the caller's
// image, private unless the request shares it.
func TestPromotedImagesAreOwned(t *testing.T) {
	h := newHarness(t)
	d := disk(t)
	fill := func(_ context.Context, dst string) error {
		b, err := os.ReadFile(d)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	}
	tests := []struct {
		name   string
		ctx    context.Context
		shared bool
	}{
		{"private", as(1001), false},
		{"shared", WithShared(as(1001), true), true},
		{"roots", as(0), false},
	}
	for _, tt := range tests {
		im, err := h.svc.Adopt(tt.ctx, tt.name, "k", "vm x (image y)", fill, operation.Discard)
		if err != nil {
			t.Fatalf("adopt %s: %v", tt.name, err)
		}
		if im.Owner != peer.UID(tt.ctx) || im.Shared != tt.shared || im.SourceKind != api.SourcePromote {
			t.Errorf("adopt %s: owner %d shared %v kind %s", tt.name, im.Owner, im.Shared, im.SourceKind)
		}
		if _, err := h.svc.Get(as(1002), tt.name); (err == nil) != tt.shared {
			t.Errorf("another user gets %s: %v", tt.name, err)
		}
	}
}

// TestCatalogNamesAreTheCatalogs: a user-made image may not take a
// catalog name, so that no one's private image blocks another's pull;
// and a catalog name another user's image holds all the same is neither
// pulled over nor shown.
func TestCatalogNamesAreTheCatalogs(t *testing.T) {
	h := newHarness(t)
	old := AptDir
	AptDir = "testdata/apt"
	defer func() { AptDir = old }()
	h.catalog = []api.ImageCatalogEntry{{Name: "deb", Kernel: "k", Sources: []api.ImageSource{{Kind: "debootstrap", Suite: "bookworm"}}}}
	alice, bob := as(1001), as(1002)
	d := disk(t)
	_, err := h.register(alice, t, d, "deb", false)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "belongs to the image catalog") {
		t.Fatalf("register of a catalog name: %v", err)
	}
	fill := func(context.Context, string) error { t.Fatal("filled a refused image"); return nil }
	if _, err := h.svc.Adopt(alice, "deb", "k", "vm x", fill, operation.Discard); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("promote to a catalog name: %v", err)
	}

	// Pulled, a catalog image is shared, whoever pulled it, and any user
	// may remove it.
	im, err := h.svc.Pull(alice, api.ImagePullRequest{Name: "deb"}, operation.Discard)
	if err != nil || im.Owner != 1001 || !im.Shared {
		t.Fatalf("pull: %+v, %v", im, err)
	}
	if err := h.svc.Remove(bob, "deb"); err != nil {
		t.Fatalf("bob removes a pulled image: %v", err)
	}

	// A catalog that later names alice's private image: bob's ensure is
	// not found and pulls nothing, his pull is refused.
	if _, err := h.register(alice, t, d, "later", false); err != nil {
		t.Fatal(err)
	}
	h.catalog = append(h.catalog, api.ImageCatalogEntry{Name: "later", Kernel: "k", Sources: []api.ImageSource{{Kind: "debootstrap", Suite: "bookworm"}}})
	runs := countCalls(h.runner, "mmdebstrap")
	if _, err := h.svc.Ensure(bob, "later", operation.Discard); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob ensures a catalog name alice's image holds: %v", err)
	}
	if _, err := h.svc.Pull(bob, api.ImagePullRequest{Name: "later"}, operation.Discard); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("bob pulls a catalog name alice's image holds: %v", err)
	}
	if n := countCalls(h.runner, "mmdebstrap"); n != runs {
		t.Errorf("pulled over alice's image (%d builds)", n-runs)
	}
	if im, err := h.svc.Get(alice, "later"); err != nil || im.SourceKind != api.SourceRegister {
		t.Errorf("alice's image after bob's tries: %+v, %v", im, err)
	}
	es, _ := h.svc.Catalog(bob)
	for _, e := range es {
		if e.Name == "later" && e.Local {
			t.Error("bob's catalog says alice's private image is local")
		}
	}
}

// TestInUseHidesOthersVMs: rm of an image in use names the caller's VMs
// and snapshots and only counts other users'.
func TestInUseHidesOthersVMs(t *testing.T) {
	h := newHarness(t)
	users := fakeUsers{"pulled": {
		{Kind: "vm", Name: "alices-vm", Owner: 1001},
		{Kind: "snapshot", Name: "alices-snap", Owner: 1001},
		{Kind: "vm", Name: "bobs-vm", Owner: 1002},
	}}
	h.svc.d.Users = users
	// A pulled image: a cache anyone may remove, once no one uses it.
	im := api.Image{Name: "pulled", SourceKind: "oci", Kernel: "k", Owner: 1002, Shared: true}
	if err := h.svc.d.Store.InsertImage(context.Background(), im); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		who       string
		ctx       context.Context
		want      string
		forbidden string
	}{
		{"alice", as(1001), `vm "alices-vm", snapshot "alices-snap" and 1 VM of another user`, "bobs-vm"},
		{"carol", as(1003), "2 VMs of other users and 1 snapshot of another user", "alices"},
		{"root", as(0), `vm "alices-vm", snapshot "alices-snap" and vm "bobs-vm"`, "another user"},
	}
	for _, tt := range tests {
		err := h.svc.Remove(tt.ctx, "pulled")
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.forbidden) {
			t.Errorf("%s: %v, want %q without %q", tt.who, err, tt.want, tt.forbidden)
		}
	}
}
