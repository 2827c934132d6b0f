//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
)

func listImages(t *testing.T, e *env) []api.Image {
	t.Helper()
	var ims []api.Image
	if err := json.Unmarshal([]byte(e.mustBanger("image", "ls", "-o", "json")), &ims); err != nil {
		t.Fatal(err)
	}
	return ims
}

// debugfs runs one read-only debugfs request against a disk image.
func debugfs(t *testing.T, disk, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %q: %v\n%s", request, err, out)
	}
	return string(out)
}

func expectStat(t *testing.T, disk, path string, wants ...string) {
	t.Helper()
	out := debugfs(t, disk, "stat "+path)
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: stat lacks %q:\n%s", path, w, out)
		}
	}
}

func fsck(t *testing.T, disk string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", disk, err, out)
	}
}

func busyboxLayer(t *testing.T) []ent {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal("needs /bin/busybox (apt-get install busybox-static); .ci/run installs it")
	}
	return []ent{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/busybox", body: string(bb), mode: 0o755},
		{name: "bin/sh", link: "busybox", typ: tar.TypeSymlink},
		{name: "bin/ls", link: "bin/busybox", typ: tar.TypeLink},
		{name: "usr/", typ: tar.TypeDir},
		{name: "usr/bin/", typ: tar.TypeDir},
		{name: "usr/bin/passwd", body: "#!/bin/sh\n", mode: 0o4755},
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"},
		{name: "etc/motd", body: "hello\n"},
		{name: "home/", typ: tar.TypeDir},
		{name: "home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		{name: "dev/", typ: tar.TypeDir},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		{name: "chain-a", link: "chain-b", typ: tar.TypeSymlink},
		{name: "chain-b", link: "chain-c", typ: tar.TypeSymlink},
		{name: "chain-c", body: "end of the chain\n"},
		{name: "opt/", typ: tar.TypeDir},
		{name: "opt/app/", typ: tar.TypeDir},
		{name: "opt/app/old.conf", body: "old\n"},
	}
}

// TestImagePullFromRegistry pulls test images built here from a real
// registry on 127.0.0.1 and checks the disks with e2fsprogs.
func TestImagePullFromRegistry(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	base := busyboxLayer(t)
	push(t, reg+"/test/busybox:1", image(t, gzipLayer(t, tarOf(t, base))))
	push(t, reg+"/test/layers:1", image(t,
		gzipLayer(t, tarOf(t, base)),
		gzipLayer(t, tarOf(t, []ent{
			{name: "etc/.wh.motd"},
			{name: "opt/app/.wh..wh..opq"},
			{name: "opt/app/new.conf", body: "new\n"},
		})),
		zstdLayer(t, tarOf(t, []ent{{name: "etc/zstd-layer", body: "from a zstd layer\n"}})),
	))

	e := newEnv(t, `ssh_public_keys = ["key.pub"]`)
	e.write("key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBanGeRtEsTkEy test@banger\n")
	e.start()

	out, errOut, code := e.banger("image", "pull", reg+"/test/busybox:1")
	if code != 0 {
		t.Fatalf("pull busybox: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, stage := range []string{"pulling " + reg + "/test/busybox:1", "layer 1 of 1", "finalizing", "writing ext4", "publishing image busybox-1"} {
		if !strings.Contains(errOut, stage) {
			t.Errorf("progress lacks %q:\n%s", stage, errOut)
		}
	}
	ims := listImages(t, e)
	if len(ims) != 1 || ims[0].Name != "busybox-1" || ims[0].Layers != 1 || ims[0].Kernel != "debian-bookworm" || !strings.HasPrefix(ims[0].Digest, "sha256:") {
		t.Fatalf("image ls = %+v", ims)
	}
	disk := ims[0].Disk
	fsck(t, disk)
	bb, _ := os.Stat("/bin/busybox")
	expectStat(t, disk, "/bin/busybox", "Type: regular", "Mode:  0755", "Links: 2", "Size: "+itoa(bb.Size()))
	expectStat(t, disk, "/bin/sh", "Type: symlink", `Fast link dest: "busybox"`)
	expectStat(t, disk, "/usr/bin/passwd", "Mode:  04755")
	expectStat(t, disk, "/home/user", "Type: directory", "Mode:  0700", "User:  1000", "Group:  1000")
	expectStat(t, disk, "/dev/null", "Type: character special", "Device major/minor number: 01:03")
	expectStat(t, disk, "/chain-a", `Fast link dest: "chain-b"`)
	expectStat(t, disk, "/chain-b", `Fast link dest: "chain-c"`)
	expectStat(t, disk, "/.banger", "Type: directory")
	if got := debugfs(t, disk, "cat /root/.ssh/authorized_keys"); !strings.Contains(got, "test@banger") {
		t.Errorf("authorized_keys = %q", got)
	}
	expectStat(t, disk, "/root/.ssh/authorized_keys", "Mode:  0600")
	if got := debugfs(t, disk, "cat /etc/resolv.conf"); !strings.Contains(got, "nameserver 10.0.2.3") {
		t.Errorf("resolv.conf = %q", got)
	}
	if got := debugfs(t, disk, "cat /etc/hostname"); !strings.Contains(got, "banger") {
		t.Errorf("hostname = %q", got)
	}

	// Several layers: whiteouts, an opaque directory, a zstd layer.
	e.mustBanger("image", "pull", reg+"/test/layers:1", "--name", "layers")
	im := findImage(t, listImages(t, e), "layers")
	if im.Layers != 3 {
		t.Errorf("layers = %d", im.Layers)
	}
	fsck(t, im.Disk)
	if got := debugfs(t, im.Disk, "ls -l /etc"); strings.Contains(got, "motd") || !strings.Contains(got, "zstd-layer") {
		t.Errorf("/etc after whiteout and zstd layer:\n%s", got)
	}
	if got := debugfs(t, im.Disk, "ls /opt/app"); strings.Contains(got, "old.conf") || !strings.Contains(got, "new.conf") {
		t.Errorf("/opt/app is not opaque:\n%s", got)
	}

	show := e.mustBanger("image", "show", "layers")
	for _, want := range []string{"Layers:   3", "Kernel:   debian-bookworm", im.Digest} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}

	// Register an existing disk, then remove both.
	// A sparse copy, as disk images are: only its data crosses the socket.
	copyDisk := filepath.Join(e.dir, "copy.ext4")
	if out, err := exec.Command("cp", "--sparse=always", im.Disk, copyDisk).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	e.mustBanger("image", "register", "adopted", "--rootfs", copyDisk)
	if im := findImage(t, listImages(t, e), "adopted"); im.SourceKind != "register" {
		t.Errorf("register: %+v", im)
	}
	_, errOut, code = e.banger("image", "register", "bad", "--rootfs", filepath.Join(e.dir, "key.pub"))
	if code == 0 || !strings.Contains(errOut, "not a clean ext4 file system") {
		t.Errorf("register of a non-ext4 file: exit %d %q", code, errOut)
	}
	e.mustBanger("image", "rm", "adopted", "layers", "busybox-1")
	if ims := listImages(t, e); len(ims) != 0 {
		t.Fatalf("after rm: %+v", ims)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "images")); len(left) != 0 {
		t.Fatalf("image dirs left: %v", left)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Fatalf("staging left: %v", left)
	}
}

func findImage(t *testing.T, ims []api.Image, name string) api.Image {
	t.Helper()
	for _, im := range ims {
		if im.Name == name {
			return im
		}
	}
	t.Fatalf("image %s not listed in %+v", name, ims)
	return api.Image{}
}

func itoa(n int64) string { return formatInt(n) }

func formatInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestImageThroughMirror resolves the real catalog entry debian-bookworm
// (docker.io/library/debian:bookworm) through a mirror configured to the
// local registry, which serves a multi-arch index.
func TestImageThroughMirror(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	amd := image(t, gzipLayer(t, tarOf(t, []ent{{name: "etc/", typ: tar.TypeDir}, {name: "etc/os-release", body: "ID=debian\nARCH=amd64\n"}})))
	arm := image(t, gzipLayer(t, tarOf(t, []ent{{name: "etc/", typ: tar.TypeDir}, {name: "etc/os-release", body: "ID=debian\nARCH=arm64\n"}})))
	pushIndex(t, reg+"/library/debian:bookworm", amd, arm)

	e := newEnv(t, "[registry_mirrors]\n\"docker.io\" = [\"http://"+reg+"\"]\n")
	e.start()
	out, errOut, code := e.banger("image", "pull", "debian-bookworm")
	if code != 0 {
		t.Fatalf("pull debian-bookworm: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "trying source 1 of 2: oci docker.io/library/debian:bookworm") || !strings.Contains(errOut, "pulling "+reg+"/library/debian:bookworm") {
		t.Errorf("progress does not show the mirror:\n%s", errOut)
	}
	im := findImage(t, listImages(t, e), "debian-bookworm")
	if !strings.HasPrefix(im.Source, reg) {
		t.Errorf("source = %s", im.Source)
	}
	if got := debugfs(t, im.Disk, "cat /etc/os-release"); !strings.Contains(got, "ARCH=amd64") {
		t.Errorf("index did not resolve to amd64: %q", got)
	}
	if out := e.mustBanger("image", "catalog"); !strings.Contains(out, "debian-bookworm") || !strings.Contains(out, "yes") {
		t.Errorf("catalog does not mark debian-bookworm local:\n%s", out)
	}
}

// TestHostileLayers: each is a clear error, nothing is published, the
// daemon keeps serving.
func TestHostileLayers(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	good := tarOf(t, []ent{{name: "etc/", typ: tar.TypeDir}, {name: "etc/hostname", body: "x\n"}})
	cut := tarOf(t, []ent{{name: "big", body: strings.Repeat("x", 100000)}})
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(tarOf(t, []ent{{name: "zeros", body: strings.Repeat("\x00", 16<<20)}}))
	zw.Close()
	cases := []struct {
		name   string
		layers [][]byte
		want   string
	}{
		{"dotdot", [][]byte{tarOf(t, []ent{{name: "../../etc/evil", body: "x"}})}, "leaves the archive root"},
		{"absolute", [][]byte{tarOf(t, []ent{{name: "/etc/evil", body: "x"}})}, "absolute path"},
		{"symlink", [][]byte{good, tarOf(t, []ent{{name: "escape", link: "/etc", typ: tar.TypeSymlink}, {name: "escape/evil", body: "x"}})}, "may not write through a symlink"},
		{"hardlink", [][]byte{tarOf(t, []ent{{name: "shadow", link: "../../../etc/shadow", typ: tar.TypeLink}})}, "leaves the archive root"},
		{"truncated", [][]byte{cut[:60000]}, "truncated"},
	}
	for _, c := range cases {
		img := image(t)
		for _, l := range c.layers {
			img = appendLayer(t, img, gzipLayer(t, l))
		}
		push(t, reg+"/hostile/"+c.name+":1", img)
	}
	push(t, reg+"/hostile/bomb:1", image(t, static.NewLayer(bomb.Bytes(), types.DockerLayer)))

	e := newEnv(t, "max_unpacked_bytes = 4194304\n")
	e.start()
	cases = append(cases, struct {
		name   string
		layers [][]byte
		want   string
	}{"bomb", nil, "limit (max_unpacked_bytes)"})
	for _, c := range cases {
		_, errOut, code := e.banger("image", "pull", reg+"/hostile/"+c.name+":1")
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error containing %q", c.name, code, errOut, c.want)
		}
	}
	for _, bad := range []struct{ ref, want string }{
		{reg + "/hostile/missing:1", "not found"},
		{"nonsense-name", `no image catalog entry named "nonsense-name"`},
		{"debian-bookwurm", `did you mean "debian-bookworm"`},
		{"UPPER/case:1", "image reference"},
	} {
		_, errOut, code := e.banger("image", "pull", bad.ref)
		if code == 0 || !strings.Contains(errOut, bad.want) {
			t.Errorf("pull %s: exit %d, %q; want %q", bad.ref, code, errOut, bad.want)
		}
	}
	if ims := listImages(t, e); len(ims) != 0 {
		t.Fatalf("hostile input published: %+v", ims)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Fatalf("staging left: %v", left)
	}
	if out := e.mustBanger("status"); !strings.Contains(out, "running") {
		t.Fatal("daemon not serving after hostile layers")
	}
}

// TestDebianBookwormBuiltLocally: with no registry in reach, the catalog's
// debian-bookworm falls back to mmdebstrap from this host's own package
// sources. A daemon killed in the middle leaves nothing behind.
func TestDebianBookwormBuiltLocally(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "mmdebstrap", "mmdebstrap")
	// A mirror that refuses connections stands in for an unreachable
	// docker.io, so the test never depends on the outside network.
	e := newEnv(t, "default_cpus = 1\ndefault_memory_mib = 512\n[registry_mirrors]\n\"docker.io\" = [\"http://127.0.0.1:1\"]\n")
	e.start()
	tmpBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), "mmdebstrap.*"))
	_, lines := e.startPullImage("debian-bookworm")
	waitLine(t, lines, "building bookworm with mmdebstrap")
	// The kill must land mid-build: mmdebstrap running for this daemon,
	// its tree growing in staging.
	var build int
	for deadline := time.Now().Add(30 * time.Second); build == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		build = procWith(t, "mmdebstrap", e.stateDir)
	}
	if build == 0 {
		t.Fatal("no mmdebstrap running for the daemon after its build line")
	}
	time.Sleep(2 * time.Second)
	if build = procWith(t, "mmdebstrap", e.stateDir); build == 0 || len(dirEntries(t, filepath.Join(e.stateDir, "staging"))) == 0 {
		t.Fatalf("the build ended before the kill (mmdebstrap pid %d, staging %v)", build, dirEntries(t, filepath.Join(e.stateDir, "staging")))
	}
	e.kill()
	for deadline := time.Now().Add(10 * time.Second); procWith(t, "mmdebstrap", e.stateDir) != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("mmdebstrap outlived the daemon killed under it")
		}
	}
	e.start()
	if ims := listImages(t, e); len(ims) != 0 {
		t.Fatalf("listed after SIGKILL: %+v", ims)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "staging")); len(left) != 0 {
		t.Fatalf("staging not cleaned at start: %v", left)
	}
	// mmdebstrap's own tree was in staging too, not left in the host's /tmp.
	if tmpAfter, _ := filepath.Glob(filepath.Join(os.TempDir(), "mmdebstrap.*")); len(tmpAfter) > len(tmpBefore) {
		t.Errorf("the killed build left %v in %s", tmpAfter, os.TempDir())
	}

	out, errOut, code := e.banger("image", "pull", "debian-bookworm")
	if code != 0 {
		t.Fatalf("pull: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "source 1 failed") || !strings.Contains(errOut, "trying source 2 of 2: debootstrap bookworm") {
		t.Errorf("progress does not show the fallback:\n%s", errOut)
	}
	im := findImage(t, listImages(t, e), "debian-bookworm")
	fsck(t, im.Disk)
	if got := debugfs(t, im.Disk, "cat /usr/lib/os-release"); !strings.Contains(got, `VERSION_CODENAME=bookworm`) {
		t.Errorf("os-release = %q", got)
	}
	expectStat(t, im.Disk, "/usr/bin/passwd", "Mode:  04755")
	if im.Files < 5000 {
		t.Errorf("only %d files", im.Files)
	}

	// The README's main job: the default image, its kernel pulled from the
	// embedded catalog through the host's apt sources, one command.
	out, errOut, code = e.banger("vm", "run", "--rm", "--", "cat", "/etc/os-release")
	if code != 0 || !strings.Contains(out, `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"`) {
		t.Fatalf("vm run -- cat /etc/os-release: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "kernel debian-bookworm is not local") {
		t.Errorf("progress does not show the kernel pulled on first use:\n%s", errOut)
	}

	// The default VM is one to work in: root's login shell from the
	// image's passwd with sshd's environment, 8 GiB free on /, and apt
	// installs a package through the host's own package sources.
	out, errOut, code = e.banger("vm", "run", "--rm", "--", "sh", "-c", `echo "$SHELL $HOME $USER $LOGNAME $PATH"; df -k / | tail -1; apt-get -qq update && apt-get -qq install -y jq >/dev/null && echo '{"ok":1}' | jq -c .`)
	if code != 0 {
		t.Fatalf("default VM: exit %d\n%s\n%s", code, out, errOut)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) < 3 || got[0] != "/bin/bash /root root root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" || got[len(got)-1] != `{"ok":1}` {
		t.Fatalf("default VM: shell, environment or jq wrong:\n%s", out)
	}
	if f := strings.Fields(got[1]); len(f) < 4 || atoi(f[3]) < 8<<20 {
		t.Errorf("df -k /: %q, want at least 8 GiB available", got[1])
	}
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// procWith returns the PID of a running process whose command line has
// both name and substr, 0 when there is none.
func procWith(t *testing.T, name, substr string) int {
	t.Helper()
	if pids := pidsWith(name, substr); len(pids) > 0 {
		return pids[0]
	}
	return 0
}
