//go:build e2e

package e2e

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// TestDevImage: one image with docker.io and systemd, built here with
// mmdebstrap from this host's package sources (as the catalog's
// debian-bookworm-dev is), booted both ways: under banger's agent as the
// whole init system, and with --init systemd.
func TestDevImage(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "mmdebstrap", "mmdebstrap")
	testkit.NeedTools(t, "iproute2", "ip")
	testkit.NeedTools(t, "nftables", "nft")
	testkit.NeedTools(t, "dpkg", "dpkg-deb")
	fs := newFileServer(t)
	reg := startRegistry(t)
	bbRef := reg + "/test/busybox:1"
	push(t, bbRef, image(t, gzipLayer(t, tarOf(t, busyboxLayer(t)))))
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\nimage_catalogs = [\"images.json\"]\ndefault_kernel_name = \"test-deb\"\ndefault_cpus = 1\ndefault_memory_mib = 1024\n")
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
	e.write("images.json", `{"images":[{"name":"dev-test","description":"bookworm with docker.io and systemd","kernel":"test-deb",
		"sources":[{"kind":"debootstrap","suite":"bookworm","variant":"minbase","packages":["docker.io","iptables","ca-certificates","systemd-sysv","dbus","git"],"services":["dockerd:/run/docker.sock"]}]}]}`)
	e.withKernel()
	e.start()
	e.mustBanger("image", "pull", "dev-test")

	t.Run("docker under banger's init", func(t *testing.T) {
		defer e.use(t)()
		dockerInVM(t, e)
	})
	t.Run("systemd", func(t *testing.T) {
		defer e.use(t)()
		systemdInVM(t, e, bbRef)
	})
}

// dockerInVM: a VM of an image with docker.io runs dockerd under
// banger's agent, on the kernel's modules and cgroup v2: docker load of
// an image the test made, docker run, docker build, the overlay2 driver.
// The containers' bridge, NAT and veths are the guest's business: the
// host's links, routes and nftables ruleset are the same after.
func dockerInVM(t *testing.T, e *env) {
	// The image docker loads: busybox, saved as `docker save` writes it.
	ref, err := name.ParseReference("banger.test/bb:1")
	if err != nil {
		t.Fatal(err)
	}
	bbBin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal("needs /bin/busybox (apt-get install busybox-static); .ci/run installs it")
	}
	bb := []ent{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/busybox", body: string(bbBin), mode: 0o755},
		{name: "bin/sh", link: "busybox", typ: tar.TypeSymlink, mode: 0o777},
		{name: "bin/echo", link: "busybox", typ: tar.TypeSymlink, mode: 0o777},
		{name: "bin/cat", link: "busybox", typ: tar.TypeSymlink, mode: 0o777},
	}
	saved := filepath.Join(e.dir, "bb.tar")
	// An uncompressed layer: docker load checks the layer's digest
	// against the config's diff ID, which the registry helpers' gzip
	// layers do not keep.
	img := image(t, static.NewLayer(tarOf(t, bb), types.DockerLayer))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.Env = "linux", "amd64", []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(saved, ref, img); err != nil {
		t.Fatal(err)
	}
	before := hostNetState(t)

	e.mustBanger("vm", "create", "--name", "d1", "--image", "dev-test", "--no-workdir")
	e.mustBanger("vm", "start", "d1")
	e.mustBanger("vm", "cp", saved, "d1:/root/bb.tar")
	sh := func(script string) string {
		t.Helper()
		out, errOut, code := e.banger("vm", "exec", "d1", "--", "sh", "-c", script)
		if code != 0 {
			log, _, _ := e.banger("vm", "exec", "d1", "--", "sh", "-c", "tail -30 /var/log/dockerd.log")
			t.Fatalf("%s: exit %d\n%s%s\ndockerd's log:\n%s", script, code, out, errOut, log)
		}
		return out
	}
	// No init system but banger's agent, which starts the image's
	// services (the catalog entry's) and says the VM is ready once
	// dockerd's socket answers: the first command finds it up.
	info := sh("docker info --format '{{.Driver}} {{.CgroupVersion}}'")
	if strings.TrimSpace(info) != "overlay2 2" {
		t.Errorf("docker info: %q, want the overlay2 driver on cgroup v2", info)
	}
	if out := sh("docker load -i /root/bb.tar"); !strings.Contains(out, "banger.test/bb:1") {
		t.Errorf("docker load: %q", out)
	}
	if out := sh("docker run --rm banger.test/bb:1 echo ok"); out != "ok\n" {
		t.Errorf("docker run: %q", out)
	}
	sh("mkdir -p /root/b && printf 'FROM banger.test/bb:1\\nRUN echo built > /built\\n' > /root/b/Dockerfile && DOCKER_BUILDKIT=0 docker build -q -t banger.test/built:1 /root/b")
	if out := sh("docker run --rm banger.test/built:1 cat /built"); out != "built\n" {
		t.Errorf("docker build, then run: %q", out)
	}
	// The bridge network docker made is the guest's: docker0 there,
	// nothing on the host.
	if out := sh("test -d /sys/class/net/docker0 && echo yes"); out != "yes\n" {
		t.Errorf("no docker0 in the guest: %q", out)
	}
	e.mustBanger("vm", "rm", "-f", "d1")
	if after := hostNetState(t); after != before {
		t.Errorf("the host's network changed while docker ran in a VM:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// systemdInVM: with --init systemd the image's systemd is PID 1 and
// banger's agent one of its units, and everything banger does through
// the agent works as under its own init: exec, ssh, cp, the seeded /work
// and diff, templates (a second VM resumes), forks, a clean power-off.
// A unit the test enables is active after a restart, and a package's
// service starts when the package is installed.
func systemdInVM(t *testing.T, e *env, busybox string) {
	repo := filepath.Join(e.dir, "repo")
	gitRepo(t, repo)
	e.cwd = repo
	defer func() { e.cwd = "" }()
	sh := func(vm, script string) string {
		t.Helper()
		out, errOut, code := e.banger("vm", "exec", vm, "--", "sh", "-c", script)
		if code != 0 {
			con, _ := os.ReadFile(e.vm(vm).Console)
			t.Fatalf("%s in %s: exit %d\n%s%s\nconsole:\n%s", script, vm, code, out, errOut, tail(string(con), 30))
		}
		return out
	}

	// Bad input changes nothing.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"vm", "create", "--name", "x1", "--image", "dev-test", "--init", "upstart"}, `init "upstart": want "banger" or "systemd"`},
	} {
		_, errOut, code := e.banger(bad.args...)
		if code == 0 || !strings.Contains(errOut, bad.want) {
			t.Errorf("%v: exit %d, want an error with %q:\n%s", bad.args, code, bad.want, errOut)
		}
	}
	// An image without systemd says so, and leaves no VM behind.
	_, errOut, code := e.banger("vm", "run", "--rm", "--name", "nosd", "--image", busybox, "--init", "systemd", "--no-workdir", "--", "true")
	if code == 0 || !strings.Contains(errOut, "this image has no systemd") || !strings.Contains(errOut, "asked to boot with init systemd") {
		t.Errorf("--init systemd on busybox: exit %d, want the image's lack of systemd named:\n%s", code, errOut)
	}
	if names := vmNames(e.vms()); len(names) != 0 {
		t.Errorf("VMs left after refused requests: %v", names)
	}

	// The first VM: seeded from the repository; it makes the template.
	out, progress := e.runVM("--name", "sd1", "--image", "dev-test", "--init", "systemd", "--",
		"sh", "-c", "cat /proc/1/comm; systemctl is-active banger-agent docker; cat /work/c.txt; echo agent > /work/from-vm.txt")
	if out != "systemd\nactive\nactive\nc1\n" {
		t.Errorf("first systemd VM: %q, want systemd as PID 1, the agent and docker active, the seed in /work", out)
	}
	if !strings.Contains(progress, "booting one") {
		t.Errorf("the first systemd VM made no template:\n%s", progress)
	}
	if v := e.vm("sd1"); v.Init != "systemd" {
		t.Errorf("vm show: init %q", v.Init)
	}
	if show := e.mustBanger("vm", "show", "sd1"); !strings.Contains(show, "Init:     systemd") {
		t.Errorf("vm show does not say the init system:\n%s", show)
	}
	// systemd's own view: running, or degraded with the units that failed.
	if state := sh("sd1", "systemctl is-system-running || systemctl --failed --no-legend"); !strings.HasPrefix(state, "running") {
		t.Errorf("systemctl is-system-running: %q", state)
	}
	if out := sh("sd1", "docker info --format '{{.Driver}} {{.CgroupDriver}}'"); out != "overlay2 systemd\n" {
		t.Errorf("docker under systemd: %q", out)
	}
	if diff := e.mustBanger("vm", "diff", "sd1", "--stat"); !strings.Contains(diff, "from-vm.txt") {
		t.Errorf("vm diff does not show the file written in /work:\n%s", diff)
	}
	if out, _, code := e.banger("vm", "ssh", "sd1", "--", "systemctl", "is-active", "systemd-journald"); code != 0 || out != "active\n" {
		t.Errorf("vm ssh -- systemctl is-active systemd-journald: exit %d, %q", code, out)
	}

	// A unit the test installs (vm cp, systemctl enable) runs at the next
	// boot; the guest powers off cleanly on vm stop.
	unit := filepath.Join(e.dir, "banger-e2e.service")
	if err := os.WriteFile(unit, []byte("[Unit]\nDescription=banger e2e\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'echo ran > /run/banger-e2e'\n[Install]\nWantedBy=multi-user.target\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustBanger("vm", "cp", unit, "sd1:/etc/systemd/system/banger-e2e.service")
	sh("sd1", "systemctl enable banger-e2e")
	if _, errOut, code := e.banger("vm", "stop", "sd1"); code != 0 || strings.Contains(errOut, "did not power off") {
		t.Errorf("vm stop of a systemd guest: exit %d, want a clean power-off:\n%s", code, errOut)
	}
	e.mustBanger("vm", "start", "sd1")
	if out := sh("sd1", "systemctl is-active banger-e2e; cat /run/banger-e2e; cat /work/from-vm.txt"); out != "active\nran\nagent\n" {
		t.Errorf("after a restart: %q, want the enabled unit run at boot and /work kept", out)
	}

	// A package's service starts when the package is installed.
	pkg := filepath.Join(e.dir, "pkg")
	for name, body := range map[string]string{
		"DEBIAN/control":  "Package: banger-e2e-svc\nVersion: 1.0\nArchitecture: all\nMaintainer: banger <e2e@banger.test>\nDescription: a service for banger's e2e test\n",
		"DEBIAN/postinst": "#!/bin/sh\nset -e\ndeb-systemd-helper enable banger-e2e-svc.service\ndeb-systemd-invoke start banger-e2e-svc.service\n",
		"lib/systemd/system/banger-e2e-svc.service": "[Unit]\nDescription=banger e2e package service\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
	} {
		p := filepath.Join(pkg, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", pkg, filepath.Join(e.dir, "svc.deb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	e.mustBanger("vm", "cp", filepath.Join(e.dir, "svc.deb"), "sd1:/root/svc.deb")
	if out := sh("sd1", "dpkg -i /root/svc.deb >/dev/null && systemctl is-active banger-e2e-svc && systemctl is-enabled banger-e2e-svc"); out != "active\nenabled\n" {
		t.Errorf("a package's service after dpkg -i: %q, want active and enabled", out)
	}

	// The next VM of its kind resumes from the template, systemd and its
	// units running; a fork of it wakes as they were.
	_, progress = e.runVM("--name", "sd2", "--image", "dev-test", "--init", "systemd", "--no-workdir", "--", "true")
	if !strings.Contains(progress, "resuming vm sd2 from template") || strings.Contains(progress, "booting") {
		t.Errorf("the second systemd VM did not resume from the template:\n%s", progress)
	}
	sh("sd2", "systemd-run --unit=counter sh -c 'while :; do date +%s%N > /root/tick; sleep 0.2; done'")
	e.mustBanger("vm", "fork", "sd2", "sd3")
	if out := sh("sd3", "hostname; systemctl is-active counter docker banger-agent; test $(cat /etc/machine-id) != "+strings.TrimSpace(sh("sd2", "cat /etc/machine-id"))+" && echo own-id"); out != "sd3\nactive\nactive\nactive\nown-id\n" {
		t.Errorf("a fork of a systemd VM: %q", out)
	}
	e.mustBanger("vm", "rm", "-f", "sd1", "sd2", "sd3")
}
