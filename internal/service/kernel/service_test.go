package kernel

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/banger-dev/banger/internal/format/debpkg/debtest"
	"github.com/banger-dev/banger/internal/format/download"
	"github.com/banger-dev/banger/internal/format/registry"
	"github.com/banger-dev/banger/internal/format/worktar"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

type fakeUsers map[string][]api.Dependent

func (f fakeUsers) VMsUsingKernel(_ context.Context, k string) ([]api.Dependent, error) {
	return f[k], nil
}
func (f fakeUsers) ForgetKernel(context.Context, string) {}

type harness struct {
	svc     *Service
	layout  layout.Layout
	runner  *runner.Recorder
	catalog []api.KernelCatalogEntry
	users   fakeUsers
	srv     *httptest.Server
	files   map[string][]byte
	hits    atomic.Int32
	uploads *upload.Store
}

func vmlinuz(t *testing.T) []byte {
	b, err := os.ReadFile("testdata/vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kernelDeb(t *testing.T, pkg string) []byte {
	return debtest.Build("Package: "+pkg+"\nVersion: 6.1.192-2\n", []debtest.File{
		{Name: "./boot/", Dir: true},
		{Name: "./boot/vmlinuz-6.1.0-56-amd64", Body: vmlinuz(t)},
		{Name: "./boot/config-6.1.0-56-amd64", Body: []byte("CONFIG_X=y\n")},
		{Name: "./lib/modules/6.1.0-56-amd64/", Dir: true},
		{Name: "./lib/modules/6.1.0-56-amd64/kernel/drivers/block/virtio_blk.ko", Body: []byte("module")},
		{Name: "./lib/modules/6.1.0-56-amd64/modules.dep", Body: []byte("kernel/drivers/block/virtio_blk.ko:\n")},
		{Name: "./lib/modules/6.1.0-56-amd64/build", Link: "/usr/src/linux-headers-6.1.0-56-amd64"},
	}, "zst")
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{files: map[string][]byte{}, users: fakeUsers{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		b, ok := h.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, "truncated.deb") {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)*2))
		}
		w.Write(b)
	}))
	t.Cleanup(h.srv.Close)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.layout = layout.Layout{Root: t.TempDir()}
	for _, d := range h.layout.Dirs() {
		os.MkdirAll(d, 0o755)
	}
	h.runner = &runner.Recorder{Paths: map[string]string{"apt-get": "/usr/bin/apt-get"}}
	h.uploads = &upload.Store{Dir: h.layout.Staging(), MaxBytes: 1 << 30}
	h.svc = New(Deps{
		Uploads: h.uploads,
		Store:   st, Users: h.users, Runner: h.runner, Layout: h.layout,
		Catalog:     func(context.Context) ([]api.KernelCatalogEntry, error) { return h.catalog, nil },
		Downloader:  download.Client{Limit: 1 << 30},
		Images:      &registry.Client{},
		MaxUnpacked: 1 << 30,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return h
}

// upload sends a file (or, dir, a tree) as a client would and returns
// its upload ID.
func (h *harness) upload(t *testing.T, path string, dir bool) string {
	t.Helper()
	return h.uploadAs(context.Background(), t, path, dir)
}

// uploadAs sends path as ctx's caller: only it may name the upload.
func (h *harness) uploadAs(ctx context.Context, t *testing.T, path string, dir bool) string {
	t.Helper()
	var body io.Reader
	kind := upload.File
	if dir {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(worktar.Write(context.Background(), path, pw)) }()
		body, kind = pr, upload.Tree
	} else {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		body = f
	}
	u, err := h.uploads.Put(ctx, body, kind)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func (h *harness) serve(path string, b []byte) string {
	h.files[path] = b
	return h.srv.URL + path
}

func (h *harness) entry(name string, srcs ...api.KernelSource) {
	h.catalog = append(h.catalog, api.KernelCatalogEntry{Name: name, Version: "6.1", Arch: "x86_64", Sources: srcs})
}

// assertClean checks that nothing is left in staging and nothing but the
// published kernels sits in kernels/.
func (h *harness) assertClean(t *testing.T, published ...string) {
	t.Helper()
	if es, _ := os.ReadDir(h.layout.Staging()); len(es) != 0 {
		t.Errorf("staging not empty: %v", es)
	}
	es, _ := os.ReadDir(h.layout.Kernels())
	if len(es) != len(published) {
		t.Errorf("kernels dir holds %v, want %v", es, published)
	}
}

func TestPullDeb(t *testing.T) {
	h := newHarness(t)
	deb := kernelDeb(t, "linux-image-6.1.0-56-amd64")
	h.entry("deb-k", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/k.deb", deb), SHA256: sum(deb)})
	var stages []string
	p := operation.Func(func(ev api.Event) {
		if ev.Message != "" {
			stages = append(stages, ev.Stage)
		}
	})
	k, err := h.svc.Pull(context.Background(), "deb-k", p)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Modules || k.Release != "6.1.0-56-amd64" || k.Version != "6.1.192-2" || k.Digest != "sha256:"+sum(deb) {
		t.Fatalf("kernel = %+v", k)
	}
	vm, err := os.ReadFile(filepath.Join(k.Dir, layout.KernelVMLinux))
	if err != nil || !bytes.HasPrefix(vm, []byte("\x7fELF")) {
		t.Fatalf("vmlinux is not ELF: %v", err)
	}
	if _, err := os.Stat(filepath.Join(k.Dir, "modules/6.1.0-56-amd64/kernel/drivers/block/virtio_blk.ko")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(stages, ","), "download,unpack,extract,verify,publish") {
		t.Errorf("stages = %v", stages)
	}
	ks, _ := h.svc.List(context.Background())
	if len(ks) != 1 || ks[0].Name != "deb-k" {
		t.Fatalf("list = %+v", ks)
	}
	h.assertClean(t, "deb-k")

	// Pulling again does nothing.
	hits := h.hits.Load()
	if _, err := h.svc.Pull(context.Background(), "deb-k", operation.Discard); err != nil || h.hits.Load() != hits {
		t.Fatalf("second pull: %v, %d new downloads", err, h.hits.Load()-hits)
	}
}

func TestPullBadInputPublishesNothing(t *testing.T) {
	h := newHarness(t)
	deb := kernelDeb(t, "linux-image-x")
	notKernel := debtest.Build("Package: hello\nVersion: 1\n", []debtest.File{{Name: "./usr/bin/hello", Body: []byte("hi")}}, "gz")
	h.entry("bad-sum", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/k.deb", deb), SHA256: strings.Repeat("0", 64)})
	h.entry("truncated", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/truncated.deb", deb), SHA256: sum(deb)})
	h.entry("not-kernel", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/hello.deb", notKernel), SHA256: sum(notKernel)})
	h.entry("cut-deb", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/cut.deb", deb[:len(deb)/2]), SHA256: sum(deb[:len(deb)/2])})
	h.entry("missing", api.KernelSource{Kind: api.SourceDeb, URL: h.srv.URL + "/nope.deb", SHA256: sum(deb)})
	tests := []struct {
		name string
		want error
		msg  string
	}{
		{"bad-sum", errdefs.ErrChecksum, "sha256"},
		{"truncated", errdefs.ErrUnavailable, "truncated"},
		{"not-kernel", errdefs.ErrInvalid, "not a kernel image package"},
		{"cut-deb", errdefs.ErrInvalid, "truncated"},
		{"missing", errdefs.ErrNotFound, "404"},
		{"cut-dev", errdefs.ErrNotFound, `did you mean "cut-deb"`},
		{"../x", errdefs.ErrInvalid, "not valid"},
		{"", errdefs.ErrInvalid, "empty"},
		{strings.Repeat("k", 200), errdefs.ErrInvalid, "limit"},
	}
	for _, tt := range tests {
		_, err := h.svc.Pull(context.Background(), tt.name, operation.Discard)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("pull %q: %v, want %v containing %q", tt.name, err, tt.want, tt.msg)
		}
	}
	h.assertClean(t)
	if ks, _ := h.svc.List(context.Background()); len(ks) != 0 {
		t.Fatalf("published after failures: %+v", ks)
	}
}

func TestSourcesTriedInOrder(t *testing.T) {
	h := newHarness(t)
	deb := kernelDeb(t, "linux-image-x")
	h.entry("k", api.KernelSource{Kind: api.SourceDeb, URL: h.srv.URL + "/gone.deb", SHA256: sum(deb)},
		api.KernelSource{Kind: api.SourceURL, URL: h.serve("/vmlinuz", vmlinuz(t)), SHA256: sum(vmlinuz(t))})
	var msgs []string
	k, err := h.svc.Pull(context.Background(), "k", operation.Func(func(ev api.Event) { msgs = append(msgs, ev.Message) }))
	if err != nil {
		t.Fatal(err)
	}
	if k.SourceKind != api.SourceURL || k.Modules || len(k.Files) != 2 {
		t.Fatalf("kernel = %+v", k)
	}
	if !strings.Contains(strings.Join(msgs, "\n"), "trying source 2 of 2") {
		t.Errorf("progress does not say which source won: %v", msgs)
	}
	h.assertClean(t, "k")
}

func TestPullApt(t *testing.T) {
	h := newHarness(t)
	meta := debtest.Build("Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n", nil, "gz")
	real := kernelDeb(t, "linux-image-6.1.0-56-amd64")
	h.runner.Handle = func(_ context.Context, c runner.Cmd) ([]byte, error) {
		pkg := c.Args[len(c.Args)-1]
		body := map[string][]byte{"linux-image-amd64": meta, "linux-image-6.1.0-56-amd64": real}[pkg]
		if body == nil {
			return nil, fmt.Errorf("E: Unable to locate package %s", pkg)
		}
		return nil, os.WriteFile(filepath.Join(c.Dir, pkg+"_6.1.192-2_amd64.deb"), body, 0o644)
	}
	h.entry("apt-k", api.KernelSource{Kind: api.SourceApt, Package: "linux-image-amd64"})
	h.entry("apt-missing", api.KernelSource{Kind: api.SourceApt, Package: "linux-image-nope"})
	k, err := h.svc.Pull(context.Background(), "apt-k", operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if k.Source != "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb (via linux-image-amd64)" || k.Digest != "sha256:"+sum(real) {
		t.Fatalf("kernel = %+v", k)
	}
	calls := h.runner.Calls()
	want := []string{
		"apt-get download -q -o APT::Sandbox::User=root linux-image-amd64",
		"apt-get download -q -o APT::Sandbox::User=root linux-image-6.1.0-56-amd64",
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls = %q", calls)
	}
	_, err = h.svc.Pull(context.Background(), "apt-missing", operation.Discard)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "apt-get update") {
		t.Fatalf("missing package: %v", err)
	}
	h.runner.Paths = nil
	h.svc.Remove(context.Background(), "apt-k")
	if _, err := h.svc.Pull(context.Background(), "apt-k", operation.Discard); !strings.Contains(fmt.Sprint(err), "needs apt-get") {
		t.Fatalf("no apt-get: %v", err)
	}
	h.assertClean(t)
}

func TestPullOCI(t *testing.T) {
	h := newHarness(t)
	reg := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	u, _ := url.Parse(reg.URL)
	ref := u.Host + "/kernels/ignite:5.10"

	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	add := func(name string, body []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write(body)
	}
	add("boot/vmlinux", append([]byte("\x7fELF"), make([]byte, 1000)...))
	add("lib/modules/5.10.51/modules.dep", []byte(""))
	add("lib/modules/5.10.51/kernel/fs/ext4.ko", []byte("ko"))
	tw.Close()
	layerT, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layerT)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	dig, _ := img.Digest()

	h.entry("oci-k", api.KernelSource{Kind: api.SourceOCI, Ref: ref})
	k, err := h.svc.Pull(context.Background(), "oci-k", operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if k.Digest != dig.String() || k.Release != "5.10.51" || !k.Modules || k.SourceKind != api.SourceOCI {
		t.Fatalf("kernel = %+v", k)
	}
	h.entry("oci-missing", api.KernelSource{Kind: api.SourceOCI, Ref: u.Host + "/kernels/nope:1"})
	if _, err := h.svc.Pull(context.Background(), "oci-missing", operation.Discard); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing image: %v", err)
	}
	h.assertClean(t, "oci-k")
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	h := newHarness(t)
	deb := kernelDeb(t, "linux-image-x")
	h.entry("k", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/k.deb", deb), SHA256: sum(deb)})
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = h.svc.Pull(context.Background(), "k", operation.Discard)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := h.hits.Load(); n != 1 {
		t.Fatalf("%d downloads for 5 concurrent pulls", n)
	}
}

func TestCanceledPullLeavesNothing(t *testing.T) {
	h := newHarness(t)
	deb := kernelDeb(t, "linux-image-x")
	h.entry("k", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/k.deb", deb), SHA256: sum(deb)})
	ctx, cancel := context.WithCancel(context.Background())
	_, err := h.svc.Pull(ctx, "k", operation.Func(func(ev api.Event) {
		if ev.Stage == "unpack" {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	h.assertClean(t)
}

func TestImportAndRemove(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dir := t.TempDir()
	debPath := filepath.Join(dir, "k.deb")
	os.WriteFile(debPath, kernelDeb(t, "linux-image-x"), 0o644)
	kPath := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kPath, vmlinuz(t), 0o644)
	initrd := filepath.Join(dir, "initrd")
	os.WriteFile(initrd, []byte("initrd"), 0o644)
	mods := filepath.Join(dir, "lib/modules/5.15.0-1")
	os.MkdirAll(filepath.Join(mods, "kernel"), 0o755)
	os.WriteFile(filepath.Join(mods, "modules.dep"), []byte(""), 0o644)
	os.WriteFile(filepath.Join(mods, "kernel/a.ko"), []byte("a"), 0o644)

	k, err := h.svc.Import(ctx, api.KernelImportRequest{Name: "from-deb", Deb: h.upload(t, debPath, false), Source: debPath}, operation.Discard)
	if err != nil || !k.Modules || k.SourceKind != "import" || k.Source != debPath {
		t.Fatalf("import deb: %+v, %v", k, err)
	}
	k, err = h.svc.Import(ctx, api.KernelImportRequest{Name: "from-files", Kernel: h.upload(t, kPath, false), Initrd: h.upload(t, initrd, false), Modules: h.upload(t, filepath.Join(dir, "lib/modules"), true)}, operation.Discard)
	if err != nil || k.Release != "5.15.0-1" || len(k.Files) != 4 {
		t.Fatalf("import files: %+v, %v", k, err)
	}
	bad := []struct {
		req  func() api.KernelImportRequest
		want string
	}{
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "from-deb", Deb: h.upload(t, debPath, false)}
		}, "already exists"},
		{func() api.KernelImportRequest { return api.KernelImportRequest{Name: "x"} }, "either"},
		// A path is never opened, whatever it names.
		{func() api.KernelImportRequest { return api.KernelImportRequest{Name: "x", Deb: "/etc/shadow"} }, `"/etc/shadow" is not an upload id`},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Kernel: h.upload(t, kPath, false), Initrd: "/etc/shadow"}
		}, `"/etc/shadow" is not an upload id`},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Deb: strings.Repeat("ab", 16)}
		}, "does not exist"},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Kernel: h.upload(t, initrd, false)}
		}, "neither an ELF"},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Deb: h.upload(t, initrd, false)}
		}, "not a Debian package"},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Kernel: h.upload(t, kPath, false), Modules: h.upload(t, kPath, false)}
		}, "is not a tree"},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Kernel: h.upload(t, kPath, false), Modules: h.upload(t, filepath.Join(dir, "lib/modules/5.15.0-1/kernel"), true)}
		}, "found 0 releases"},
		{func() api.KernelImportRequest {
			return api.KernelImportRequest{Name: "x", Kernel: h.upload(t, kPath, false), Source: "a\x1b[31m"}
		}, "printable"},
	}
	for _, b := range bad {
		req := b.req()
		if _, err := h.svc.Import(ctx, req, operation.Discard); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("import %+v: %v, want %q", req, err, b.want)
		}
	}
	h.assertClean(t, "from-deb", "from-files")

	h.users["from-deb"] = []api.Dependent{{Kind: "vm", Name: "vm1"}}
	if err := h.svc.Remove(ctx, "from-deb"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("rm of used kernel: %v", err)
	}
	delete(h.users, "from-deb")
	if err := h.svc.Remove(ctx, "from-deb"); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Remove(ctx, "from-deb"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second rm: %v", err)
	}
	h.assertClean(t, "from-files")
}

func TestRecoverCleansLeftovers(t *testing.T) {
	h := newHarness(t)
	os.MkdirAll(filepath.Join(h.layout.Staging(), "kernel-x-123/modules"), 0o755)
	os.MkdirAll(filepath.Join(h.layout.Kernels(), "orphan"), 0o755)
	if err := h.svc.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.assertClean(t)
}

func TestPublishedDirHoldsOnlyKernelFiles(t *testing.T) {
	h := newHarness(t)
	deb := kernelDeb(t, "linux-image-x")
	h.entry("k", api.KernelSource{Kind: api.SourceDeb, URL: h.serve("/k.deb", deb), SHA256: sum(deb)})
	k, err := h.svc.Pull(context.Background(), "k", operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := os.ReadDir(k.Dir)
	var got []string
	for _, e := range es {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != "modules,vmlinux,vmlinuz" {
		t.Fatalf("kernel dir holds %v", got)
	}
}
