//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// gitLayer is the host's git with the libraries it links, so that a
// busybox guest can run git over its /work.
func gitLayer(t *testing.T) []ent {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("needs git (apt-get install git); .ci/run installs it")
	}
	return hostBinsLayer(t, gitBin)
}

// hostBinsLayer is the host's programs bins with the libraries they
// link, at the same paths, for a busybox guest to run.
func hostBinsLayer(t *testing.T, bins ...string) []ent {
	t.Helper()
	seen := map[string]bool{}
	var files []string
	for _, bin := range bins {
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", bin, err)
		}
		for _, f := range append([]string{bin}, strings.Fields(string(out))...) {
			if strings.HasPrefix(f, "/") && !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
	}
	dirs := map[string]bool{"bin": true, "usr": true, "usr/bin": true, "etc": true}
	var ents []ent
	for _, f := range files {
		b, err := os.ReadFile(f) // follows the library's symlink
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(f, "/")
		var parents []string
		for d := filepath.Dir(rel); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			ents = append(ents, ent{name: d + "/", typ: tar.TypeDir})
		}
		ents = append(ents, ent{name: rel, body: string(b), mode: 0o755})
	}
	return ents
}

// gitRepo makes a checkout with a commit, a staged change, an unstaged
// change, an untracked file, an ignored one, a link out of the repo, an
// executable, and credentials in its config.
func gitRepo(t *testing.T, dir string) {
	t.Helper()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Host", "GIT_AUTHOR_EMAIL=host@example.com", "GIT_COMMITTER_NAME=Host", "GIT_COMMITTER_EMAIL=host@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, body string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(dir, 0o755)
	run("init", "-q", "-b", "main")
	write("a.txt", "a1\n", 0o644)
	write("b.txt", "b1\n", 0o644)
	write("run.sh", "#!/bin/sh\necho run\n", 0o755)
	write(".gitignore", "*.log\n", 0o644)
	os.Symlink("../outside-secret", filepath.Join(dir, "out-link"))
	run("add", ".")
	run("commit", "-q", "-m", "first")
	write("c.txt", "c1\n", 0o644)
	run("add", "c.txt")
	run("commit", "-q", "-m", "second")
	write("a.txt", "a2 staged\n", 0o644)
	run("add", "a.txt")
	write("b.txt", "b2 unstaged\n", 0o644)
	write("new.txt", "untracked\n", 0o644)
	write("build.log", "ignored\n", 0o644)
	run("config", "credential.helper", "store --file /root/creds")
	run("remote", "add", "origin", "https://alice:s3cr3t-token@example.com/r.git")
}

// bangerAsNobody runs the CLI as an unprivileged user (nobody) who can
// reach the socket, as a member of the banger group would.
func (e *env) bangerAsNobody(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	testkit.NeedRoot(e.t, "running the CLI as another user")
	home := filepath.Join(e.dir, "nobody-home")
	os.MkdirAll(home, 0o700)
	os.Chown(home, 65534, 65534)
	// The test's directories are private to root: let nobody through to
	// the socket and the files the test means it to see.
	for d := e.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(e.socket, 0o666)
	return e.bangerAs(&account{name: "nobody", uid: 65534, gid: 65534, home: home}, "", args...)
}

func hostGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v in %s: %v", args, dir, err)
	}
	return string(out)
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// gitImageEnv starts a daemon with a kernel and the image "git" (busybox
// with the host's git) pulled from a registry on 127.0.0.1.
func gitImageEnv(t *testing.T, config string) *env {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); .ci/run installs it")
	}
	reg := startRegistry(t)
	ref := reg + "/test/git:1"
	push(t, ref, image(t, gzipLayer(t, tarOf(t, append(busyboxLayer(t), gitLayer(t)...)))))
	fs := newFileServer(t)
	e := newEnv(t, "kernel_catalogs = [\"catalog.json\"]\ndefault_kernel_name = \"test-deb\"\ndefault_cpus = 1\ndefault_memory_mib = 256\n"+config)
	catalogWith(e, map[string]struct{ url, sha string }{"test-deb": {fs.add("/k.deb", served{path: kernelDeb}), sha256File(t, kernelDeb)}})
	e.withKernel()
	e.start()
	e.mustBanger("kernel", "pull", "test-deb")
	e.mustBanger("image", "pull", ref, "--name", "git")
	return e
}

// TestWorkspace seeds a checkout into VMs under TCG and brings the work
// back, from running and stopped VMs, as a user would.
func TestWorkspace(t *testing.T) {
	t.Parallel()
	e := gitImageEnv(t, "max_seed_bytes = 8388608\n")

	repo := filepath.Join(e.dir, "repo")
	gitRepo(t, repo)
	os.WriteFile(filepath.Join(e.dir, "outside-secret"), []byte("host-only secret\n"), 0o600)
	home := filepath.Join(e.dir, "home")
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	lentMarker := "lent-marker-" + hex.EncodeToString([]byte(t.Name()))[:12]
	os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[user]\n\tname = Lent\n# "+lentMarker+"\n"), 0o600)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), []byte("never-lent-key\n"), 0o600)
	cfg := filepath.Join(e.dir, "user-config.toml")
	os.WriteFile(cfg, []byte("[auth_sync]\nfiles = [\"~/.gitconfig\"]\nenv = [\"GH_TOKEN\"]\n"), 0o644)
	e.extraEnv = []string{"HOME=" + home, "BANGER_CONFIG=" + cfg, "GH_TOKEN=" + lentMarker + "-token"}
	e.cwd = repo

	hostStatus := hostGit(t, repo, "status", "--short")
	hostV2 := hostGit(t, repo, "status", "--porcelain=v2")
	hostHead := hostGit(t, repo, "rev-parse", "HEAD")
	untouched := func(t *testing.T) {
		t.Helper()
		if got := hostGit(t, repo, "status", "--porcelain=v2"); got != hostV2 {
			t.Fatalf("the host's working tree or index changed:\nbefore:\n%s\nafter:\n%s", hostV2, got)
		}
		if got := hostGit(t, repo, "rev-parse", "HEAD"); got != hostHead {
			t.Fatalf("the host's HEAD moved: %s -> %s", hostHead, got)
		}
	}
	guest := func(vm, script string) string {
		t.Helper()
		return e.mustBanger("vm", "exec", vm, "--", "sh", "-c", script)
	}
	const gitID = "git -c user.name=Guest -c user.email=guest@example.com"

	t.Run("the guest sees the checkout as the host does", func(t *testing.T) {
		out, errOut, code := e.banger("vm", "run", "--image", "git", "--name", "w1", "--work-disk", "96M", "--", "git", "-C", "/work", "status", "--short")
		if code != 0 {
			t.Fatalf("vm run: exit %d\n%s\n%s", code, out, errOut)
		}
		if out != hostStatus {
			t.Fatalf("git status in the guest:\n%s\non the host:\n%s", out, hostStatus)
		}
		if !strings.Contains(errOut, "seeding checkout at "+hostHead[:12]+" (main)") {
			t.Errorf("no seeding line in:\n%s", errOut)
		}
		if got := guest("w1", "readlink /work/out-link; stat -c %a /work/run.sh; ls /work/build.log 2>&1; cat /work/outside-secret 2>&1 | head -c 40"); !strings.Contains(got, "../outside-secret\n755\n") || strings.Contains(got, "host-only") || !strings.Contains(got, "No such file") {
			t.Errorf("link, mode or ignored file wrong in the guest:\n%s", got)
		}
		if got := guest("w1", "cat /work/.git/config"); strings.Contains(got, "s3cr3t") || strings.Contains(got, "helper") || !strings.Contains(got, "https://example.com/r.git") {
			t.Errorf("credentials reached the guest's .git/config:\n%s", got)
		}
		v := e.vm("w1")
		if v.Work == nil || v.Work.Base != strings.TrimSpace(hostHead) || v.Work.Branch != "main" || !strings.HasPrefix(v.Work.Fingerprint, "sha256:") || v.Work.Files < 8 {
			t.Errorf("vm show's work record: %+v", v.Work)
		}
		if show := e.mustBanger("vm", "show", "w1"); !strings.Contains(show, "Base:   "+strings.TrimSpace(hostHead)) || !strings.Contains(show, "Pulled: never") {
			t.Errorf("vm show:\n%s", show)
		}
		if ls := e.mustBanger("vm", "ls"); !strings.Contains(ls, "WORK") || !strings.Contains(ls, "seeded") {
			t.Errorf("vm ls does not mark the work disk:\n%s", ls)
		}
		untouched(t)
	})

	t.Run("credentials are lent on a tmpfs, never stored", func(t *testing.T) {
		got := guest("w1", "stat -L -c '%a %U' /root/.gitconfig; stat -f -L -c %T /root/.gitconfig; echo $GH_TOKEN; ls /root/.ssh/id_ed25519 2>&1; true")
		if !strings.Contains(got, "600 root\ntmpfs\n"+lentMarker+"-token\n") || !strings.Contains(got, "No such file") {
			t.Errorf("lent files in the guest:\n%s", got)
		}
		if show := e.mustBanger("vm", "show", "w1"); !strings.Contains(show, "Lent:     $GH_TOKEN, ~/.gitconfig") || strings.Contains(show, lentMarker) {
			t.Errorf("vm show's lent line:\n%s", show)
		}
		// A changed token is lent again by hand.
		os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[user]\n\tname = Relent\n"), 0o600)
		if _, errOut, code := e.banger("vm", "authsync", "w1"); code != 0 || !strings.Contains(errOut, "lent vm w1: $GH_TOKEN, ~/.gitconfig") {
			t.Errorf("vm authsync: exit %d, %s", code, errOut)
		}
		if got := guest("w1", "cat /root/.gitconfig"); !strings.Contains(got, "Relent") {
			t.Errorf("re-lent file: %q", got)
		}
	})

	t.Run("work comes back from a running VM and from a stopped one", func(t *testing.T) {
		guest("w1", "cd /work && "+gitID+" commit -q -m guest-commit && echo guest-edit > new2.txt && echo more >> b.txt")
		diff := e.mustBanger("vm", "diff", "w1")
		for _, want := range []string{"guest-commit", "a.txt", "new2.txt", "+guest-edit", "+more"} {
			if !strings.Contains(diff, want) {
				t.Errorf("vm diff of the running VM lacks %q:\n%s", want, diff)
			}
		}
		// --since-seed: the guest's work only, not what was uncommitted on
		// the host when it was seeded (a.txt staged, b.txt, new.txt).
		since := e.mustBanger("vm", "diff", "w1", "--since-seed")
		for _, want := range []string{"since the seed", "new2.txt", "+guest-edit", "+more"} {
			if !strings.Contains(since, want) {
				t.Errorf("vm diff --since-seed lacks %q:\n%s", want, since)
			}
		}
		for _, hosts := range []string{"+a2 staged", "+b2 unstaged", "a/new.txt", " new.txt "} {
			if strings.Contains(since, hosts) {
				t.Errorf("vm diff --since-seed shows the host's own uncommitted work (%q):\n%s", hosts, since)
			}
		}
		// Moving the ref in the guest changes nothing: the daemon's record
		// names the seed's commit.
		guest("w1", "cd /work && git update-ref refs/banger/seed HEAD~1")
		if again := e.mustBanger("vm", "diff", "w1", "--since-seed"); again != since {
			t.Errorf("a guest that moved refs/banger/seed changed vm diff --since-seed:\n%s", again)
		}
		e.mustBanger("vm", "stop", "w1")
		disk := filepath.Join(e.vm("w1").Dir, "work.ext4")
		before := fileSum(t, disk)
		if stopped := e.mustBanger("vm", "diff", "w1"); stopped != diff {
			t.Errorf("vm diff of the stopped VM differs from the running one's:\n%s\nvs\n%s", stopped, diff)
		}
		if fileSum(t, disk) != before || e.vm("w1").State != "stopped" {
			t.Error("reading the stopped VM's work changed its disk or started it")
		}
		for _, d := range []string{disk, filepath.Join(e.vm("w1").Dir, "root.qcow2")} {
			if b, err := os.ReadFile(d); err == nil && bytes.Contains(b, []byte(lentMarker)) {
				t.Errorf("a lent credential reached %s", d)
			}
		}
		_, errOut, code := e.banger("vm", "rm", "w1")
		if code == 0 || !strings.Contains(errOut, "never pulled") {
			t.Fatalf("vm rm of unpulled work: exit %d, %s", code, errOut)
		}
		out := e.mustBanger("vm", "pull", "w1")
		if !strings.Contains(out, "branch banger/w1") || !strings.Contains(out, "guest-commit") {
			t.Errorf("vm pull said:\n%s", out)
		}
		if got := hostGit(t, repo, "show", "banger/w1:new2.txt"); got != "guest-edit\n" {
			t.Errorf("new2.txt on the branch: %q", got)
		}
		if got := hostGit(t, repo, "show", "banger/w1:b.txt"); got != "b2 unstaged\nmore\n" {
			t.Errorf("b.txt on the branch: %q", got)
		}
		if got := hostGit(t, repo, "log", "--format=%s", "-3", "banger/w1"); got != "Uncommitted work in vm w1\nguest-commit\nsecond\n" {
			t.Errorf("branch history:\n%s", got)
		}
		if got := hostGit(t, repo, "show", "banger/w1~1:a.txt"); got != "a2 staged\n" {
			t.Errorf("the guest's commit holds a.txt %q", got)
		}
		if out, err := exec.Command("git", "-C", repo, "grep", "-c", lentMarker, "banger/w1").CombinedOutput(); err == nil {
			t.Errorf("a lent credential is on the branch: %s", out)
		}
		untouched(t)
		_, errOut, code = e.banger("vm", "pull", "w1")
		if code == 0 || !strings.Contains(errOut, "exists already") {
			t.Errorf("pull onto an existing branch: exit %d, %s", code, errOut)
		}
		if !strings.Contains(e.mustBanger("vm", "show", "w1"), "Pulled: ") || !strings.Contains(e.mustBanger("vm", "ls"), "pulled") {
			t.Error("the pull is not recorded")
		}
	})

	t.Run("two VMs seeded at different moments keep their own state", func(t *testing.T) {
		os.WriteFile(filepath.Join(repo, "later.txt"), []byte("later\n"), 0o644)
		defer os.Remove(filepath.Join(repo, "later.txt"))
		e.mustBanger("vm", "create", "--image", "git", "--name", "w2")
		e.mustBanger("vm", "pull", "w2") // never booted: read from its disk
		if got := hostGit(t, repo, "show", "banger/w2:later.txt"); got != "later\n" {
			t.Errorf("w2's branch lacks the later file: %q", got)
		}
		if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", "banger/w1:later.txt").CombinedOutput(); err == nil {
			t.Errorf("w1's branch has a file seeded after it: %s", out)
		}
		e.mustBanger("vm", "rm", "w2")
	})

	t.Run("rewritten history and a full work disk still come back", func(t *testing.T) {
		e.mustBanger("vm", "start", "w1")
		guest("w1", "cd /work && git reset -q --hard HEAD~2 && "+gitID+" commit -q --allow-empty -m rewritten")
		got := guest("w1", "dd if=/dev/zero of=/work/fill bs=1M count=200 2>&1; sync; echo done")
		if !strings.Contains(got, "No space left on device") {
			t.Fatalf("filling /work: %s", got)
		}
		// Read back from the disk: through the guest, 90 MiB of zeros would
		// take long under TCG, and the running path is tested above.
		e.mustBanger("vm", "stop", "w1")
		out, errOut, code := e.banger("vm", "pull", "w1", "--force")
		if code != 0 || !strings.Contains(errOut, "rewrote history") {
			t.Fatalf("vm pull --force after a rewrite: exit %d\n%s\n%s", code, out, errOut)
		}
		if got := hostGit(t, repo, "log", "--format=%s", "-2", "banger/w1"); !strings.HasPrefix(got, "Uncommitted work in vm w1\nrewritten\n") {
			t.Errorf("rewritten branch:\n%s", got)
		}
		untouched(t)
		e.mustBanger("vm", "rm", "-f", "w1")
		if vs := e.vms(); len(vs) != 0 {
			t.Errorf("VMs left: %v", vmNames(vs))
		}
	})

	t.Run("bad seeds fail clearly and leave nothing", func(t *testing.T) {
		big := filepath.Join(e.dir, "big")
		os.MkdirAll(big, 0o755)
		os.WriteFile(filepath.Join(big, "huge.bin"), bytes.Repeat([]byte("x"), 9<<20), 0o644)
		os.WriteFile(filepath.Join(big, "small.txt"), []byte("s\n"), 0o644)
		_, errOut, code := e.banger("vm", "create", "--image", "git", "--workdir", big)
		if code == 0 || !strings.Contains(errOut, "max_seed_bytes") || !strings.Contains(errOut, "huge.bin (9.0 MiB)") {
			t.Errorf("oversized seed: exit %d, %s", code, errOut)
		}
		_, errOut, code = e.banger("vm", "create", "--image", "git", "--workdir", filepath.Join(e.dir, "missing"))
		if code == 0 || !strings.Contains(errOut, "no such file") {
			t.Errorf("missing workdir: exit %d, %s", code, errOut)
		}
		unreadable := filepath.Join(e.dir, "unreadable")
		os.MkdirAll(unreadable, 0o755)
		os.WriteFile(filepath.Join(unreadable, "ok.txt"), []byte("fine\n"), 0o644)
		os.WriteFile(filepath.Join(unreadable, "secret.txt"), []byte("root only\n"), 0o600)
		out, errOut, code := e.bangerAsNobody("vm", "create", "--image", "git", "--workdir", unreadable)
		if code == 0 || !strings.Contains(errOut, "cannot read secret.txt: open") || !strings.Contains(errOut, "permission denied") {
			t.Errorf("unreadable file, as an unprivileged caller: exit %d\n%s\n%s", code, out, errOut)
		}
		if vs := e.vms(); len(vs) != 0 {
			t.Errorf("VMs left: %v", vmNames(vs))
		}
		if left, _ := filepath.Glob(filepath.Join(e.stateDir, "staging", "seed-*")); len(left) != 0 {
			t.Errorf("seeds left in staging: %v", left)
		}
		if ents := dirEntries(t, filepath.Join(e.stateDir, "vms")); len(ents) != 0 {
			t.Errorf("vm directories left: %v", ents)
		}
	})
}
