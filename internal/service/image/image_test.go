package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/banger-dev/banger/internal/format/download"
	"github.com/banger-dev/banger/internal/format/registry"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestHostSources(t *testing.T) {
	got, err := HostSources("testdata/apt", "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"deb http://mirror.example/debian bookworm main contrib",
		"deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example/debian bookworm-updates main",
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.example/debian-security bookworm-security main",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("HostSources =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := HostSources("testdata/apt", "noble"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("noble on a Debian host: %v", err)
	}
}

func TestNameFromRef(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/library/debian:bookworm":              "debian-bookworm",
		"alpine":                                         "alpine",
		"127.0.0.1:5000/tools/busybox:1.36":              "busybox-1.36",
		"quay.io/x/y@sha256:" + strings.Repeat("ab", 32): "y-abababababab",
		"ghcr.io/o/Some_Thing:V1":                        "",
	} {
		if got := NameFromRef(ref); got != want {
			t.Errorf("NameFromRef(%s) = %q, want %q", ref, got, want)
		}
	}
}

type fakeKernels struct {
	mu      sync.Mutex
	ensured []string // guarded by mu
}

func (f *fakeKernels) Ensure(_ context.Context, name string, _ operation.Progress) (api.Kernel, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensured = append(f.ensured, name)
	return api.Kernel{Name: name}, nil
}

type harness struct {
	svc     *Service
	kernels *fakeKernels
	catalog []api.ImageCatalogEntry
	runner  *runner.Recorder
	files   map[string][]byte
	url     string
	layout  layout.Layout
	uploads *upload.Store
}

func needE2fsprogs(t *testing.T) {
	testkit.NeedTools(t, "e2fsprogs", "mkfs.ext4", "resize2fs", "tune2fs", "e2fsck")
}

func newHarness(t *testing.T) *harness {
	needE2fsprogs(t)
	h := &harness{kernels: &fakeKernels{}, files: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := h.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.layout = layout.Layout{Root: t.TempDir()}
	for _, d := range h.layout.Dirs() {
		os.MkdirAll(d, 0o755)
	}
	// e2fsprogs run for real; mmdebstrap is faked.
	h.runner = &runner.Recorder{Paths: map[string]string{"mmdebstrap": "/usr/bin/mmdebstrap"}}
	h.runner.Handle = func(ctx context.Context, c runner.Cmd) ([]byte, error) {
		if c.Name == "mmdebstrap" {
			return nil, fakeMmdebstrap(c)
		}
		return runner.Exec{}.Run(ctx, c)
	}
	h.uploads = &upload.Store{Dir: h.layout.Staging(), MaxBytes: 1 << 30}
	h.svc = New(Deps{
		Uploads: h.uploads,
		Store:   st, Kernels: h.kernels, Runner: h.runner, Layout: h.layout,
		Catalog:       func(context.Context) ([]api.ImageCatalogEntry, error) { return h.catalog, nil },
		Registry:      &registry.Client{},
		Downloader:    download.Client{},
		DefaultKernel: "default-k",
		MaxUnpacked:   1 << 30,
		Log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return h
}

// fakeMmdebstrap writes a small root file system tarball where
// mmdebstrap would.
func fakeMmdebstrap(c runner.Cmd) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "./etc/debian_version", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("12.9\n"))
	// As mmdebstrap's has: finalize replaces it.
	tw.WriteHeader(&tar.Header{Name: "./etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("host\n"))
	tw.Close()
	target := c.Args[len(c.Args)-2]
	return os.WriteFile(target, buf.Bytes(), 0o644)
}

func (h *harness) assertClean(t *testing.T, published ...string) {
	t.Helper()
	if es, _ := os.ReadDir(h.layout.Staging()); len(es) != 0 {
		t.Errorf("staging not empty: %v", es)
	}
	if es, _ := os.ReadDir(h.layout.Images()); len(es) != len(published) {
		t.Errorf("images dir holds %v, want %v", es, published)
	}
}

func TestDebootstrapUsesHostSources(t *testing.T) {
	h := newHarness(t)
	old := AptDir
	AptDir = "testdata/apt"
	defer func() { AptDir = old }()
	h.catalog = []api.ImageCatalogEntry{{Name: "deb", Kernel: "k", Sources: []api.ImageSource{{Kind: "debootstrap", Suite: "bookworm", Variant: "minbase", Packages: []string{"git", "iproute2"}}}}}
	im, err := h.svc.Pull(context.Background(), api.ImagePullRequest{Name: "deb"}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if im.SourceKind != "debootstrap" || im.Kernel != "k" {
		t.Fatalf("image = %+v", im)
	}
	var call string
	for _, c := range h.runner.Calls() {
		if strings.HasPrefix(c, "mmdebstrap") {
			call = c
		}
	}
	if !strings.Contains(call, "--variant=minbase --include=git,iproute2 bookworm") || !strings.HasSuffix(call, "/sources.list") {
		t.Fatalf("mmdebstrap call = %q", call)
	}
	h.assertClean(t, "deb")
}

func makeExt4(t *testing.T) []byte {
	p := filepath.Join(t.TempDir(), "fs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", p, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	b, _ := os.ReadFile(p)
	return b
}

func bundle(t *testing.T, files map[string][]byte, manifest string) []byte {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	add("manifest.json", []byte(manifest))
	for n, b := range files {
		add(n, b)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func hexsum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBundles(t *testing.T) {
	h := newHarness(t)
	fs := makeExt4(t)
	good := bundle(t, map[string][]byte{"root.ext4": fs}, fmt.Sprintf(`{"name":"b","kernel":"bundle-kernel","rootfs":"root.ext4","sha256":{"root.ext4":%q}}`, hexsum(fs)))
	badSum := bundle(t, map[string][]byte{"root.ext4": fs}, fmt.Sprintf(`{"name":"b","rootfs":"root.ext4","sha256":{"root.ext4":%q}}`, strings.Repeat("0", 64)))
	escape := bundle(t, map[string][]byte{"root.ext4": fs}, fmt.Sprintf(`{"name":"b","rootfs":"../root.ext4","sha256":{"../root.ext4":%q}}`, hexsum(fs)))
	notExt4 := bundle(t, map[string][]byte{"root.ext4": []byte("junk")}, fmt.Sprintf(`{"name":"b","rootfs":"root.ext4","sha256":{"root.ext4":%q}}`, hexsum([]byte("junk"))))
	var withDir bytes.Buffer
	tw := tar.NewWriter(&withDir)
	tw.WriteHeader(&tar.Header{Name: "sub/../../x", Typeflag: tar.TypeReg, Size: 0})
	tw.Close()
	entries := map[string][]byte{"good": good, "badsum": badSum, "escape": escape, "notext4": notExt4, "evilpath": withDir.Bytes(), "cut": good[:len(good)/2]}
	for name, b := range entries {
		h.files["/"+name] = b
		h.catalog = append(h.catalog, api.ImageCatalogEntry{Name: name, Kernel: "catalog-kernel", Sources: []api.ImageSource{{Kind: "bundle", URL: h.url + "/" + name, SHA256: hexsum(b)}}})
	}
	im, err := h.svc.Pull(context.Background(), api.ImagePullRequest{Name: "good"}, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if im.Kernel != "bundle-kernel" || im.SourceKind != "bundle" || len(h.kernels.ensured) != 1 || h.kernels.ensured[0] != "bundle-kernel" {
		t.Fatalf("image %+v, kernels ensured %v", im, h.kernels.ensured)
	}
	for name, want := range map[string]error{"badsum": errdefs.ErrChecksum, "escape": errdefs.ErrInvalid, "notext4": errdefs.ErrInvalid, "evilpath": errdefs.ErrInvalid, "cut": errdefs.ErrInvalid} {
		if _, err := h.svc.Pull(context.Background(), api.ImagePullRequest{Name: name}, operation.Discard); !errors.Is(err, want) {
			t.Errorf("bundle %s: %v, want %v", name, err, want)
		}
	}
	h.assertClean(t, "good")
}

func FuzzBundleManifest(f *testing.F) {
	f.Add([]byte(`{"name":"b","kernel":"k","rootfs":"root.ext4","sha256":{"root.ext4":"` + strings.Repeat("a", 64) + `"}}`))
	f.Add([]byte(`{"rootfs":"../x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseBundleManifest(b)
		if err != nil {
			return
		}
		if strings.ContainsAny(m.Rootfs, "/\\") || m.Rootfs == ".." {
			t.Fatalf("accepted rootfs %q", m.Rootfs)
		}
	})
}

func countCalls(r *runner.Recorder, prefix string) int {
	n := 0
	for _, c := range r.Calls() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// TestEnsureAndConcurrentPulls: the auto-pull seam pulls a missing image
// once, however many callers ask at the same time, and leaves the kernel
// to the VM service (which boots the image's or another one).
func TestEnsureAndConcurrentPulls(t *testing.T) {
	h := newHarness(t)
	old := AptDir
	AptDir = "testdata/apt"
	defer func() { AptDir = old }()
	h.catalog = []api.ImageCatalogEntry{{Name: "deb", Kernel: "deb-kernel", Sources: []api.ImageSource{{Kind: "debootstrap", Suite: "bookworm"}}}}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = h.svc.Ensure(context.Background(), "deb", operation.Discard)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countCalls(h.runner, "mmdebstrap"); n != 1 {
		t.Fatalf("mmdebstrap ran %d times for 4 concurrent pulls", n)
	}
	if len(h.kernels.ensured) != 0 {
		t.Fatalf("ensure of an image pulled kernels %v: the VM service picks the kernel", h.kernels.ensured)
	}
	if _, err := h.svc.Ensure(context.Background(), "nope", operation.Discard); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("ensure of an unknown image: %v", err)
	}
	h.assertClean(t, "deb")
}

// TestRegisterTakesUploadsNotPaths: register adopts an ext4 file the
// client sent; a path where the upload ID goes is refused unopened, and
// nothing is left of refused or used uploads.
func TestRegisterTakesUploadsNotPaths(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "hello"), []byte("hi\n"), 0o644)
	disk := filepath.Join(t.TempDir(), "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", src, disk, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	put := func(path string) string {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		u, err := h.uploads.Put(ctx, f, upload.File)
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	im, err := h.svc.Register(ctx, api.ImageRegisterRequest{Name: "mine", Rootfs: put(disk), Source: disk}, operation.Discard)
	if err != nil || im.SourceKind != api.SourceRegister || im.Source != disk || im.Kernel != "default-k" {
		t.Fatalf("register: %+v, %v", im, err)
	}
	notExt4 := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(notExt4, []byte("not a file system"), 0o644)
	for _, tt := range []struct {
		req  api.ImageRegisterRequest
		want string
	}{
		{api.ImageRegisterRequest{Name: "x", Rootfs: "/etc/shadow"}, `"/etc/shadow" is not an upload id`},
		{api.ImageRegisterRequest{Name: "x", Rootfs: put(notExt4)}, "not a clean ext4 file system"},
		{api.ImageRegisterRequest{Name: "mine", Rootfs: put(disk)}, "already exists"},
	} {
		if err := h.svc.CheckRegister(ctx, tt.req); err == nil {
			if _, err = h.svc.Register(ctx, tt.req, operation.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("register %+v: %v, want %q", tt.req, err, tt.want)
			}
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("check %+v: %v, want %q", tt.req, err, tt.want)
		}
	}
	h.assertClean(t, "mine")
}
