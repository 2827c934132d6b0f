//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/format/debpkg/debtest"
	"github.com/banger-dev/banger/internal/format/initramfs"
	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// catalogWith writes a kernel catalog file of deb entries.
func catalogWith(e *env, entries map[string]struct{ url, sha string }) string {
	var parts []string
	for name, s := range entries {
		parts = append(parts, fmt.Sprintf(`{"name":%q,"version":"6.1","arch":"x86_64","description":"e2e","sources":[{"kind":"deb","url":%q,"sha256":%q}]}`, name, s.url, s.sha))
	}
	return e.write("catalog.json", `{"kernels":[`+strings.Join(parts, ",")+`]}`)
}

func listKernels(t *testing.T, e *env) []api.Kernel {
	t.Helper()
	var ks []api.Kernel
	if err := json.Unmarshal([]byte(e.mustBanger("kernel", "ls", "-o", "json")), &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestKernelPullDeb is the vertical slice: a real kernel .deb served from
// 127.0.0.1 through a catalog file, pulled, listed, shown, removed.
func TestKernelPullDeb(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	e := newEnv(t, `kernel_catalogs = ["catalog.json"]`)
	sum := sha256File(t, kernelDeb)
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sum}})
	e.start()

	if out := e.mustBanger("kernel", "catalog"); !strings.Contains(out, "test-deb") || !strings.Contains(out, "debian-bookworm") {
		t.Fatalf("catalog does not merge embedded and configured entries:\n%s", out)
	}
	out, errOut, code := e.banger("kernel", "pull", "test-deb")
	if code != 0 {
		t.Fatalf("pull: exit %d\n%s\n%s\n%s", code, out, errOut, e.log)
	}
	for _, stage := range []string{"trying source 1 of 1", "downloading", "unpacking", "extracting vmlinux", "publishing"} {
		if !strings.Contains(errOut, stage) {
			t.Errorf("progress lacks %q:\n%s", stage, errOut)
		}
	}

	ks := listKernels(t, e)
	if len(ks) != 1 || ks[0].Name != "test-deb" || !ks[0].Modules || ks[0].Digest != "sha256:"+sum {
		t.Fatalf("kernel ls -o json = %+v", ks)
	}
	k := ks[0]
	f, err := elf.Open(filepath.Join(k.Dir, "vmlinux"))
	if err != nil {
		t.Fatalf("vmlinux is not an ELF file: %v", err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("vmlinux machine %v", f.Machine)
	}
	f.Close()
	mods, _ := filepath.Glob(filepath.Join(k.Dir, "modules", k.Release, "kernel/drivers/block/virtio_blk.ko*"))
	if len(mods) != 1 {
		t.Errorf("virtio_blk module missing under %s", filepath.Join(k.Dir, "modules", k.Release))
	}
	// banger's initramfs for this real kernel loads what the root disk
	// and the network need, dependencies first.
	var img bytes.Buffer
	loaded, err := initramfs.Build(&img, agentBin, filepath.Join(k.Dir, "modules", k.Release))
	if err != nil {
		t.Fatalf("initramfs of the real kernel: %v", err)
	}
	var order []string
	for _, m := range loaded {
		order = append(order, m.Name)
	}
	for _, m := range []string{"virtio_blk", "ext4", "jbd2", "virtio_net"} {
		if !slices.Contains(order, m) {
			t.Errorf("%s missing from the initramfs's modules: %v", m, order)
		}
	}
	if slices.Index(order, "jbd2") > slices.Index(order, "ext4") {
		t.Errorf("jbd2 must load before ext4: %v", order)
	}
	show := e.mustBanger("kernel", "show", "test-deb")
	for _, want := range []string{"Release:   " + k.Release, "Modules:   yes", sum, "vmlinux", "vmlinuz"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	if out := e.mustBanger("kernel", "catalog", "-o", "json"); !strings.Contains(out, `"local": true`) {
		t.Errorf("catalog does not mark test-deb local")
	}

	// Pulling again is a no-op that downloads nothing.
	e.mustBanger("kernel", "pull", "test-deb")
	if n := fs.hitCount("/k.deb"); n != 1 {
		t.Errorf("%d downloads after a second pull", n)
	}

	// Import of the same file under another name gives the same kernel.
	e.mustBanger("kernel", "import", "imported", "--deb", kernelDeb)
	if ks := listKernels(t, e); len(ks) != 2 || ks[0].Release != ks[1].Release {
		t.Fatalf("after import: %+v", ks)
	}

	e.mustBanger("kernel", "rm", "test-deb", "imported")
	if ks := listKernels(t, e); len(ks) != 0 {
		t.Fatalf("after rm: %+v", ks)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "kernels")); len(left) != 0 {
		t.Fatalf("kernel dirs left after rm: %v", left)
	}
	if err := e.term(); err != nil {
		t.Fatalf("daemon exit on SIGTERM: %v\n%s", err, e.log)
	}
	if _, err := os.Stat(e.socket); !os.IsNotExist(err) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}

// TestKernelBadInput: each is a clear error, nothing is published, and
// the daemon keeps serving.
func TestKernelBadInput(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	e := newEnv(t, `kernel_catalogs = ["catalog.json"]`)
	sum := sha256File(t, kernelDeb)
	hello := e.write("hello.deb", string(debtest.Build("Package: hello\nVersion: 1.0\n", []debtest.File{{Name: "./usr/bin/hello", Body: []byte("#!/bin/sh\n")}}, "gz")))
	catalogWith(e, map[string]struct{ url, sha string }{
		"good":       {fs.add("/k.deb", served{path: kernelDeb}), sum},
		"bad-sum":    {fs.add("/k.deb", served{path: kernelDeb}), strings.Repeat("0", 64)},
		"truncated":  {fs.add("/trunc.deb", served{path: kernelDeb, truncate: true}), sum},
		"not-kernel": {fs.add("/hello.deb", served{path: hello}), sha256File(t, hello)},
		"gone":       {fs.URL + "/missing.deb", sum},
	})
	e.start()

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"kernel", "pull", "bad-sum"}, "sha256 is " + sum},
		{[]string{"kernel", "pull", "truncated"}, "truncated"},
		{[]string{"kernel", "pull", "not-kernel"}, `package "hello" has no /boot/vmlinuz-*: not a kernel image package`},
		{[]string{"kernel", "pull", "gone"}, "404 Not Found"},
		{[]string{"kernel", "pull", "goood"}, `did you mean "good"`},
		{[]string{"kernel", "pull", "../x"}, `kernel name "../x" is not valid`},
		{[]string{"kernel", "pull", ""}, "kernel name is empty"},
		{[]string{"kernel", "pull", strings.Repeat("a", 200)}, "200 characters long, the limit is 63"},
		{[]string{"kernel", "show", "nope"}, `no local kernel named "nope"`},
		{[]string{"kernel", "rm", "nope"}, `no local kernel named "nope"`},
		{[]string{"kernel", "import", "x", "--deb", hello}, "not a kernel image package"},
		{[]string{"kernel", "import", "x", "--deb", filepath.Join(e.dir, "missing.deb")}, "no such file"},
		{[]string{"kernel", "import", "x"}, "give either --deb FILE or --kernel FILE"},
		{[]string{"kernel", "ls", "-o", "yaml"}, "want table or json"},
	}
	for _, tt := range tests {
		_, errOut, code := e.banger(tt.args...)
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("banger %q: exit %d, stderr %q; want an error containing %q", tt.args, code, errOut, tt.want)
		}
		if strings.Contains(errOut, "panic") {
			t.Errorf("banger %q panicked: %s", tt.args, errOut)
		}
	}
	if ks := listKernels(t, e); len(ks) != 0 {
		t.Fatalf("bad input published kernels: %+v", ks)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Fatalf("staging leftovers: %v", left)
	}
	// Still serving, and a good pull works.
	e.mustBanger("kernel", "pull", "good")
	if ks := listKernels(t, e); len(ks) != 1 {
		t.Fatalf("good pull after bad ones: %+v", ks)
	}
}

// TestBrokenCatalogFile: a configured catalog that is not valid JSON is a
// clear error naming the file; the daemon keeps serving.
func TestBrokenCatalogFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `kernel_catalogs = ["broken.json"]`)
	e.write("broken.json", `{"kernels": [ {"name": "x",, ]`)
	e.start()
	for _, args := range [][]string{{"kernel", "catalog"}, {"kernel", "pull", "debian-bookworm"}} {
		_, errOut, code := e.banger(args...)
		if code == 0 || !strings.Contains(errOut, "broken.json") || !strings.Contains(errOut, "not valid JSON") {
			t.Errorf("banger %v: exit %d, %q", args, code, errOut)
		}
	}
	if out := e.mustBanger("status"); !strings.Contains(out, "running") {
		t.Fatalf("status after broken catalog: %s", out)
	}
}

// TestSIGKILLDuringPull: a daemon killed mid-download or mid-unpack leaves
// nothing listed; the next start cleans staging and a new pull succeeds.
func TestSIGKILLDuringPull(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	e := newEnv(t, `kernel_catalogs = ["catalog.json"]`)
	sum := sha256File(t, kernelDeb)
	catalogWith(e, map[string]struct{ url, sha string }{
		"slow": {fs.add("/slow.deb", served{path: kernelDeb, rate: 8 << 20}), sum},
	})
	for _, stage := range []string{"download: ", "==> unpacking"} {
		e.start()
		_, lines := e.startPull("slow")
		waitLine(t, lines, stage)
		e.kill()
		if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) == 0 {
			t.Logf("killed at %q before staging had files", stage)
		}
		e.start()
		if ks := listKernels(t, e); len(ks) != 0 {
			t.Fatalf("killed at %q: listed after restart: %+v", stage, ks)
		}
		if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
			t.Fatalf("killed at %q: staging not cleaned at start: %v", stage, left)
		}
		if left := dirEntries(t, filepath.Join(e.stateDir, "kernels")); len(left) != 0 {
			t.Fatalf("killed at %q: half-made kernel dir: %v", stage, left)
		}
		e.kill()
	}
	e.start()
	e.mustBanger("kernel", "pull", "slow")
	if ks := listKernels(t, e); len(ks) != 1 || !ks[0].Modules {
		t.Fatalf("pull after crashes: %+v", ks)
	}
}

// TestDaemonLifecycle: one daemon per state directory; a clear message
// when none runs.
func TestDaemonLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	_, errOut, code := e.banger("status")
	if code != 3 || !strings.Contains(errOut, "not running") || !strings.Contains(errOut, "banger daemon") {
		t.Fatalf("status without daemon: exit %d %q", code, errOut)
	}
	e.start()
	second := exec.Command(bangerBin, "daemon", "--state-dir", e.stateDir, "--socket", e.socket+"2", "--config", e.config)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another banger daemon") || !strings.Contains(string(out), fmt.Sprint(e.daemon.Process.Pid)) {
		t.Fatalf("second daemon on the same state dir: %v\n%s", err, out)
	}
	other := exec.Command(bangerBin, "daemon", "--state-dir", filepath.Join(e.dir, "other"), "--socket", e.socket, "--config", e.config)
	out, err = other.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another running daemon") {
		t.Fatalf("second daemon on the same socket: %v\n%s", err, out)
	}
	if out := e.mustBanger("version"); !strings.Contains(out, "daemon: banger") {
		t.Fatalf("version: %s", out)
	}
	if out := e.mustBanger("completion", "bash"); !strings.Contains(out, "banger") {
		t.Fatal("no bash completion")
	}
}

// TestConcurrentAPICalls: 50 calls at once against one daemon all answer
// correctly.
func TestConcurrentAPICalls(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	e := newEnv(t, `kernel_catalogs = ["catalog.json"]`)
	catalogWith(e, map[string]struct{ url, sha string }{"k": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
	e.start()
	e.mustBanger("kernel", "pull", "k")
	c := client.New(e.socket)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var err error
			switch i % 6 {
			case 0:
				var st api.Status
				if st, err = c.Status(ctx); err == nil && st.Kernels != 1 {
					err = fmt.Errorf("status says %d kernels", st.Kernels)
				}
			case 1:
				var ks []api.Kernel
				if ks, err = c.Kernels(ctx); err == nil && (len(ks) != 1 || ks[0].Name != "k") {
					err = fmt.Errorf("ls = %+v", ks)
				}
			case 2:
				var k api.Kernel
				if k, err = c.Kernel(ctx, "k"); err == nil && !k.Modules {
					err = fmt.Errorf("show = %+v", k)
				}
			case 3:
				var es []api.KernelCatalogEntry
				if es, err = c.KernelCatalog(ctx); err == nil && len(es) < 2 {
					err = fmt.Errorf("catalog = %+v", es)
				}
			case 4:
				if _, err = c.Kernel(ctx, "missing"); errors.Is(err, errdefs.ErrNotFound) {
					err = nil
				} else {
					err = fmt.Errorf("show missing: %v", err)
				}
			case 5:
				var k api.Kernel
				if k, err = c.PullKernel(ctx, "k", nil); err == nil && k.Name != "k" {
					err = fmt.Errorf("pull = %+v", k)
				}
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestConcurrentPullsDownloadOnce: two clients pulling the same kernel at
// once cause one download.
func TestConcurrentPullsDownloadOnce(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	e := newEnv(t, `kernel_catalogs = ["catalog.json"]`)
	catalogWith(e, map[string]struct{ url, sha string }{"k": {fs.add("/k.deb", served{path: kernelDeb, rate: 32 << 20}), sha256File(t, kernelDeb)}})
	e.start()
	c := client.New(e.socket)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.PullKernel(context.Background(), "k", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := fs.hitCount("/k.deb"); n != 1 {
		t.Fatalf("%d downloads for 3 concurrent pulls", n)
	}
}

// TestDefaultKernelFromAptSources pulls the embedded catalog's default
// kernel the way a fresh Debian host (CI included) gets it: through the
// host's own package sources.
func TestDefaultKernelFromAptSources(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "apt (a Debian or Ubuntu host)", "apt-get")
	e := newEnv(t, "")
	e.start()
	out, errOut, code := e.banger("kernel", "pull", "debian-bookworm")
	if code != 0 {
		t.Fatalf("pull debian-bookworm: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "apt-get download linux-image-amd64") || !strings.Contains(errOut, "metapackage") {
		t.Errorf("progress does not show the apt source and the metapackage hop:\n%s", errOut)
	}
	ks := listKernels(t, e)
	if len(ks) != 1 || ks[0].SourceKind != "apt" || !ks[0].Modules || !strings.Contains(ks[0].Source, "(via linux-image-amd64)") {
		t.Fatalf("ls = %+v", ks)
	}
}

// TestInterruptedClient: Ctrl-C on the CLI cancels the pull in the daemon,
// which undoes it; a client killed outright leaves the pull to complete.
func TestInterruptedClient(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	e := newEnv(t, `kernel_catalogs = ["catalog.json"]`)
	catalogWith(e, map[string]struct{ url, sha string }{
		"slow": {fs.add("/slow.deb", served{path: kernelDeb, rate: 16 << 20}), sha256File(t, kernelDeb)},
	})
	e.start()

	cmd, lines := e.startPull("slow")
	waitLine(t, lines, "download: ")
	cmd.Process.Signal(os.Interrupt)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(strings.Join(rest, "\n"), "canceled") {
		t.Fatalf("Ctrl-C: %v, output after it: %q", err, rest)
	}
	if ks := listKernels(t, e); len(ks) != 0 {
		t.Fatalf("canceled pull published: %+v", ks)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Fatalf("canceled pull left staging files: %v", left)
	}

	cmd, lines = e.startPull("slow")
	waitLine(t, lines, "download: ")
	cmd.Process.Kill()
	cmd.Wait()
	c := client.New(e.socket)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if k, err := c.Kernel(context.Background(), "slow"); err == nil && k.Modules {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pull abandoned by its killed client never completed:\n%s", e.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDaemonOpensNoPathACallerNames: the files of kernel import and image
// register are read by the CLI with the caller's rights and sent; a
// member of the banger group cannot have the root daemon read a file
// for it, and the daemon logs who asked for what.
func TestDaemonOpensNoPathACallerNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.start()
	// A small bzImage anyone may read, copied where nobody can reach it.
	b, err := os.ReadFile("../internal/service/kernel/testdata/vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	kernelFile := e.write("vmlinuz", string(b))
	os.Chmod(kernelFile, 0o644)

	for _, args := range [][]string{
		{"kernel", "import", "x", "--kernel", kernelFile, "--initrd", "/etc/shadow"},
		{"kernel", "import", "x", "--deb", "/etc/shadow"},
		{"image", "register", "y", "--rootfs", "/etc/shadow"},
	} {
		_, errOut, code := e.bangerAsNobody(args...)
		if code == 0 || !strings.Contains(errOut, "/etc/shadow: permission denied") {
			t.Errorf("%v as nobody: exit %d, %s; want the CLI's own permission denied", args, code, errOut)
		}
	}
	if strings.Contains(e.log.String(), "/etc/shadow") {
		t.Errorf("the daemon heard of /etc/shadow:\n%s", e.log)
	}
	if ks := listKernels(t, e); len(ks) != 0 {
		t.Fatalf("kernels after refused imports: %+v", ks)
	}
	// Asked directly, with a path where an upload ID goes, the daemon
	// refuses without opening it.
	c := client.New(e.socket)
	for _, req := range []api.KernelImportRequest{{Name: "x", Deb: "/etc/shadow"}, {Name: "x", Kernel: "/etc/shadow"}} {
		if _, err := c.ImportKernel(context.Background(), req, nil); err == nil || !strings.Contains(err.Error(), `"/etc/shadow" is not an upload id`) {
			t.Errorf("import %+v: %v", req, err)
		}
	}
	if _, err := c.RegisterImage(context.Background(), api.ImageRegisterRequest{Name: "y", Rootfs: "/etc/shadow"}, nil); err == nil || !strings.Contains(err.Error(), `"/etc/shadow" is not an upload id`) {
		t.Errorf("register /etc/shadow: %v", err)
	}

	// A file the caller can read is imported, with progress.
	_, errOut, code := e.bangerAsNobody("kernel", "import", "mine", "--kernel", kernelFile)
	if code != 0 || !strings.Contains(errOut, "sending "+kernelFile) {
		t.Fatalf("import of a readable file as nobody: exit %d, %s", code, errOut)
	}
	if ks := listKernels(t, e); len(ks) != 1 || ks[0].Source != kernelFile {
		t.Fatalf("kernels: %+v", ks)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Errorf("uploads left in staging: %v", left)
	}
	// One audit line per state-changing request, naming the caller.
	var audit []string
	for _, l := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(l, "msg=audit") && strings.Contains(l, "uid=65534") {
			audit = append(audit, l)
		}
	}
	if !slices.ContainsFunc(audit, func(l string) bool { return strings.Contains(l, "path=/v1/uploads status=201") }) ||
		!slices.ContainsFunc(audit, func(l string) bool { return strings.Contains(l, "path=/v1/kernels/mine/import status=200") }) {
		t.Errorf("audit lines for nobody:\n%s", strings.Join(audit, "\n"))
	}
}

// TestOwnKernelReachesForNoCatalogKernel: `vm create --image REF --kernel
// K` boots K and never reaches for the catalog's default kernel, which
// here is out of reach (its file is gone): the create works offline.
func TestOwnKernelReachesForNoCatalogKernel(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	ref := reg + "/test/busybox:1"
	push(t, ref, image(t, gzipLayer(t, tarOf(t, busyboxLayer(t)))))
	fs := newFileServer(t)
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\ndefault_kernel_name = \"test-deb\"\n")
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.URL + "/gone.deb", sha256File(t, kernelDeb)}})
	e.start()
	e.mustBanger("kernel", "import", "own", "--deb", kernelDeb)

	e.mustBanger("vm", "create", "--image", ref, "--kernel", "own", "--name", "mine")
	if n := fs.hitCount("/gone.deb"); n != 0 {
		t.Fatalf("the catalog's default kernel was fetched %d times for a VM with a kernel of its own", n)
	}
	if v := e.vm("mine"); v.Kernel != "own" {
		t.Fatalf("vm kernel %q, want own", v.Kernel)
	}
	var names []string
	for _, k := range listKernels(t, e) {
		names = append(names, k.Name)
	}
	if strings.Join(names, " ") != "own" {
		t.Fatalf("kernels after create: %v, want only own", names)
	}
	// Without --kernel the image's default is the one booted, and its
	// source being gone is said plainly.
	_, errOut, code := e.banger("vm", "create", "--image", ref, "--name", "theirs")
	if code == 0 || !strings.Contains(errOut, "test-deb") {
		t.Fatalf("create with the unreachable default kernel: exit %d: %s", code, errOut)
	}
	if n := fs.hitCount("/gone.deb"); n == 0 {
		t.Fatalf("the default kernel was not even tried")
	}
}
