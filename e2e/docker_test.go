//go:build e2e

package e2e

import (
	"archive/tar"
	"os"
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

// TestDockerInVM: a VM of an image with docker.io (built here with
// mmdebstrap from this host's package sources) runs dockerd under
// banger's agent, on the kernel's modules and cgroup v2: docker load of
// an image the test made, docker run, docker build, the overlay2 driver.
// The containers' bridge, NAT and veths are the guest's business: the
// host's links, routes and nftables ruleset are the same after.
func TestDockerInVM(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "mmdebstrap", "mmdebstrap")
	testkit.NeedTools(t, "iproute2", "ip")
	testkit.NeedTools(t, "nftables", "nft")
	fs := newFileServer(t)
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\nimage_catalogs = [\"images.json\"]\ndefault_kernel_name = \"test-deb\"\ndefault_cpus = 1\ndefault_memory_mib = 1024\n")
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
	e.write("images.json", `{"images":[{"name":"docker-test","description":"bookworm with docker.io","kernel":"test-deb",
		"sources":[{"kind":"debootstrap","suite":"bookworm","variant":"minbase","packages":["docker.io","iptables","ca-certificates"],"services":["dockerd:/run/docker.sock"]}]}]}`)
	e.withKernel()
	e.start()

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

	e.mustBanger("vm", "create", "--name", "d1", "--image", "docker-test", "--no-workdir")
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
