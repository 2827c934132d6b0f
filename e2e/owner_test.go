//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// account is a user the test made, in the group the daemon's socket
// belongs to, as a member of a team's sandbox server would be.
type account struct {
	name     string
	uid, gid int
	groups   []uint32
	home     string
}

// makeGroup adds a group for the daemon's socket, removed at the end.
func makeGroup(t *testing.T) (name string, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to make test accounts (CI runs as root)")
	}
	name = fmt.Sprintf("bgr%d", os.Getpid()%100000)
	if out, err := exec.Command("groupadd", name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ = strconv.Atoi(g.Gid)
	return name, gid
}

// makeAccount adds a user in group (none for ""), with a home under dir,
// removed at the end.
func makeAccount(t *testing.T, dir, prefix, group string, gid int) *account {
	t.Helper()
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	home := filepath.Join(dir, name)
	args := []string{"-M", "-d", home, "-s", "/bin/sh", name}
	if group != "" {
		args = append([]string{"-G", group}, args...)
	}
	if out, err := exec.Command("useradd", args...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	pgid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(home, uid, pgid)
	a := &account{name: name, uid: uid, gid: pgid, home: home}
	if group != "" {
		a.groups = []uint32{uint32(gid)}
	}
	return a
}

// chownTree gives a tree to an account.
func (a *account) chownTree(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, a.uid, a.gid)
		}
		return err
	})
}

// bangerAs runs the CLI as the account, in dir (its home when ""), with
// its own home, key and config (in the env's network namespace, if it
// has one), reaching the daemon through the socket's group only.
func (e *env) bangerAs(a *account, dir string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	if dir == "" {
		dir = a.home
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bangerBin, args...)
	if e.netns != "" {
		// Entering the namespace takes root: the account's rights are
		// taken on after, by setpriv, for banger itself.
		groups := "--clear-groups"
		if len(a.groups) > 0 {
			groups = fmt.Sprintf("--groups=%d", a.groups[0])
		}
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.netns, "setpriv", fmt.Sprintf("--reuid=%d", a.uid), fmt.Sprintf("--regid=%d", a.gid), groups, bangerBin}, args...)...)
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid), Groups: a.groups}}
	}
	cmd.Env = append(os.Environ(), "BANGER_SOCKET="+e.socket, "HOME="+a.home, "BANGER_SSH_KEY="+filepath.Join(a.home, "id_ed25519"), "BANGER_CONFIG="+filepath.Join(a.home, "config.toml"))
	cmd.Dir = dir
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("banger %v as %s: %v", args, a.name, err)
	}
	return o.String(), er.String(), code
}

func (e *env) mustBangerAs(a *account, dir string, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.bangerAs(a, dir, args...)
	if code != 0 {
		e.t.Fatalf("banger %s as %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), a.name, code, out, errOut)
	}
	return out
}

// grepTree lists the files under dir that hold needle, disks left out:
// lent credentials live on a tmpfs in the guest, so only saved memory and
// device state can hold them, and a work disk's gigabytes of holes would
// take a minute to read.
func grepTree(t *testing.T, dir, needle string) []string {
	t.Helper()
	return grepSince(t, dir, time.Time{}, needle)[needle]
}

// fileHolds says whether the file at p holds needle, read in pieces.
func fileHolds(t *testing.T, p string, needle []byte) bool {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20+len(needle))
	carry := 0
	for {
		n, err := f.Read(buf[carry:])
		if bytes.Contains(buf[:carry+n], needle) {
			return true
		}
		if err != nil {
			return false
		}
		// Keep the tail, in case needle straddles two reads.
		carry = copy(buf, buf[max(0, carry+n-len(needle)+1):carry+n])
	}
}

// TestOwners: two members of the daemon's socket group, alice and bob,
// on one daemon. What alice makes does not exist for bob: every verb he
// tries on it answers not found, changes nothing, and leaves an audit line
// with his uid. Root sees both, with owners. Lent credentials reach a
// snapshot only when asked; bob's VMs are bounded by max_vms_per_user.
func TestOwners(t *testing.T) {
	t.Parallel()
	group, gid := makeGroup(t)
	e := gitImageEnv(t, fmt.Sprintf("max_vms_per_user = 2\nsocket_group = %q\n", group))
	// The test's directories are private to root: let the accounts through
	// to the socket and their homes. The socket itself stays the group's.
	for d := e.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if fi, err := os.Stat(e.socket); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket: %v %v; want mode 0660 for group %s", fi.Mode(), err, group)
	}
	alice := makeAccount(t, e.dir, "bga", group, gid)
	bob := makeAccount(t, e.dir, "bgb", group, gid)

	// Alice works in her checkout and lends the VM a token.
	aliceRepo := filepath.Join(alice.home, "repo")
	gitRepo(t, aliceRepo)
	token := "lent-token-" + strconv.Itoa(os.Getpid())
	os.WriteFile(filepath.Join(alice.home, ".token"), []byte(token+"\n"), 0o600)
	os.WriteFile(filepath.Join(alice.home, "config.toml"), []byte("[auth_sync]\nfiles = [\".token\"]\n"), 0o600)
	alice.chownTree(t, alice.home)
	bobRepo := filepath.Join(bob.home, "repo")
	gitRepo(t, bobRepo)
	bob.chownTree(t, bob.home)

	e.mustBangerAs(alice, aliceRepo, "vm", "create", "--image", "git", "--name", "a1")
	e.mustBangerAs(alice, aliceRepo, "vm", "start", "a1")
	var a1 api.VM
	json.Unmarshal([]byte(e.mustBangerAs(alice, "", "vm", "show", "a1", "-o", "json")), &a1)
	if a1.Owner != uint32(alice.uid) || a1.State != api.VMRunning || strings.Join(a1.Lent, ",") != "~/.token" {
		t.Fatalf("alice's VM: owner %d state %s lent %v", a1.Owner, a1.State, a1.Lent)
	}

	t.Run("a VM holding lent credentials is snapshot only when asked", func(t *testing.T) {
		defer e.use(t)()
		_, errOut, code := e.bangerAs(alice, "", "vm", "snapshot", "a1", "snap-a")
		if code == 0 || !strings.Contains(errOut, "holds lent credentials (~/.token)") || !strings.Contains(errOut, "--with-lent") {
			t.Fatalf("snapshot of a lent VM: exit %d, %s", code, errOut)
		}
		if hits := grepTree(t, filepath.Join(e.stateDir, "snapshots"), token); len(hits) != 0 {
			t.Fatalf("the lent token reached the host's disk after a refused snapshot: %v", hits)
		}
		_, errOut, code = e.bangerAs(alice, "", "vm", "snapshot", "a1", "snap-a", "--with-lent")
		if code != 0 || !strings.Contains(errOut, "warning: snapshot snap-a holds lent credentials in its memory (~/.token)") {
			t.Fatalf("snapshot --with-lent: exit %d, %s", code, errOut)
		}
		if hits := grepTree(t, filepath.Join(e.stateDir, "snapshots"), token); len(hits) == 0 {
			t.Errorf("the snapshot taken --with-lent does not hold the token it says it holds")
		}
		if ls := e.mustBangerAs(alice, "", "vm", "snapshot", "ls"); !strings.Contains(ls, "LENT") || !strings.Contains(ls, "~/.token") {
			t.Errorf("snapshot ls:\n%s", ls)
		}
	})

	t.Run("bob's VMs are bounded, root's are not", func(t *testing.T) {
		defer e.use(t)()
		e.mustBangerAs(bob, bobRepo, "vm", "create", "--image", "git", "--name", "b1")
		e.mustBangerAs(bob, bobRepo, "vm", "start", "b1")
		e.mustBangerAs(bob, "", "vm", "create", "--image", "git", "--name", "b2", "--no-workdir")
		_, errOut, code := e.bangerAs(bob, "", "vm", "create", "--image", "git", "--name", "b3", "--no-workdir")
		if code == 0 || !strings.Contains(errOut, "you have 2 VMs, and max_vms_per_user is 2") {
			t.Fatalf("bob's third VM: exit %d, %s", code, errOut)
		}
		for _, n := range []string{"r1", "r2", "r3"} {
			e.mustBanger("vm", "create", "--image", "git", "--name", n, "--no-workdir")
		}
		// A snapshot of a VM that was lent nothing holds no token.
		e.mustBangerAs(bob, "", "vm", "snapshot", "b1", "snap-b")
		if hits := grepTree(t, filepath.Join(e.stateDir, "snapshots", "snap-b"), token); len(hits) != 0 {
			t.Errorf("bob's snapshot holds alice's token: %v", hits)
		}
	})

	t.Run("what alice made does not exist for bob", func(t *testing.T) {
		defer e.use(t)()
		before := e.mustBangerAs(alice, "", "vm", "exec", "a1", "--", "sh", "-c", "cat /work/a.txt; ls /work | wc -l")
		// Bob has something to lend too (his VMs were lent nothing).
		os.WriteFile(filepath.Join(bob.home, ".token"), []byte("bobs own\n"), 0o600)
		os.WriteFile(filepath.Join(bob.home, "config.toml"), []byte("[auth_sync]\nfiles = [\".token\"]\n"), 0o600)
		bob.chownTree(t, bob.home)
		var vs []api.VM
		json.Unmarshal([]byte(e.mustBangerAs(bob, "", "vm", "ls", "-o", "json")), &vs)
		if strings.Join(vmNames(vs), ",") != "b1=running,b2=stopped" {
			t.Errorf("bob's vm ls: %v", vmNames(vs))
		}
		if ls := e.mustBangerAs(bob, "", "vm", "snapshot", "ls"); strings.Contains(ls, "snap-a") {
			t.Errorf("bob's snapshot ls shows alice's:\n%s", ls)
		}
		tries := [][]string{
			{"vm", "show", "a1"},
			{"vm", "exec", "a1", "--", "true"},
			{"vm", "stop", "a1"},
			{"vm", "start", "a1"},
			{"vm", "rm", "-f", "a1"},
			{"vm", "fork", "a1", "bobs-copy", "--with-lent"},
			{"vm", "snapshot", "a1", "bobs-snap", "--with-lent"},
			{"vm", "diff", "a1"},
			{"vm", "pull", "a1"},
			{"vm", "logs", "a1"},
			{"vm", "report", "a1"},
			{"vm", "report", "a1", "--changes"},
			{"vm", "authsync", "a1"},
			{"vm", "run", "--from-snapshot", "snap-a", "--name", "bobs-fork", "--", "true"},
			{"vm", "snapshot", "rm", "snap-a"},
		}
		for _, args := range tries {
			out, errOut, code := e.bangerAs(bob, bobRepo, args...)
			if code == 0 || !strings.Contains(errOut, "does not exist") {
				t.Errorf("bob's %v: exit %d, want not found\nstdout: %s\nstderr: %s", args, code, out, errOut)
			}
		}
		// Through banger mcp too: bob's agent names alice's VM. The
		// Inspector runs as root; the server it starts is bob's.
		server := e.write("bob-mcp", fmt.Sprintf("#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --groups=%d env HOME=%s BANGER_SOCKET=%s BANGER_SSH_KEY=%s/id_ed25519 BANGER_CONFIG=%s/config.toml %s mcp\n",
			bob.uid, bob.gid, gid, bob.home, e.socket, bob.home, bob.home, bangerBin))
		os.Chmod(server, 0o755)
		inspectorBin := mcpInspector(t)
		for tool, extra := range map[string][]string{
			"sandbox_exec": {"command=true"}, "sandbox_read_file": {"path=a.txt"}, "sandbox_diff": nil, "sandbox_pull": nil,
			"sandbox_stop": nil, "sandbox_remove": {"force=true"}, "sandbox_logs": nil, "sandbox_report": nil,
		} {
			args := append([]string{"--cli", server, "--method", "tools/call", "--tool-name", tool, "--tool-arg", "vm=a1"}, extra...)
			cmd := exec.Command(inspectorBin, args...)
			cmd.Dir = bobRepo
			out, _ := cmd.CombinedOutput()
			var r toolResult
			if err := json.Unmarshal(out, &r); err != nil || !r.IsError || !strings.Contains(r.text(), "a1") {
				t.Errorf("bob's %s on a1: %s", tool, out)
			}
		}
		// Alice's VM runs on, unchanged.
		if after := e.mustBangerAs(alice, "", "vm", "exec", "a1", "--", "sh", "-c", "cat /work/a.txt; ls /work | wc -l"); after != before {
			t.Errorf("alice's /work changed: %q -> %q", before, after)
		}
		json.Unmarshal([]byte(e.mustBangerAs(alice, "", "vm", "show", "a1", "-o", "json")), &a1)
		if a1.State != api.VMRunning {
			t.Errorf("alice's VM is %s after bob's tries", a1.State)
		}
		// Each of bob's tries left a line with his uid.
		var audit []string
		for _, l := range strings.Split(e.log.String(), "\n") {
			if strings.Contains(l, "msg=audit") && strings.Contains(l, fmt.Sprintf("uid=%d ", bob.uid)) && strings.Contains(l, "status=404") {
				audit = append(audit, l)
			}
		}
		for _, want := range []string{"path=/v1/vms/a1 ", "object=vm/a1", "object=snapshot/snap-a"} {
			found := false
			for _, l := range audit {
				found = found || strings.Contains(l, want)
			}
			if !found {
				t.Errorf("no audit line of bob's with %q:\n%s", want, strings.Join(audit, "\n"))
			}
		}
		if len(audit) < len(tries) {
			t.Errorf("%d audit lines of bob's refused tries, want at least %d:\n%s", len(audit), len(tries), strings.Join(audit, "\n"))
		}
	})

	t.Run("root sees everyone's, with owners", func(t *testing.T) {
		defer e.use(t)()
		ls := e.mustBanger("vm", "ls")
		for _, want := range []string{`NAME\s+OWNER`, `a1\s+` + alice.name, `b1\s+` + bob.name, `r1\s+root`} {
			if !regexp.MustCompile(want).MatchString(ls) {
				t.Errorf("root's vm ls lacks %q:\n%s", want, ls)
			}
		}
		owners := map[string]uint32{}
		for _, v := range e.vms() {
			owners[v.Name] = v.Owner
		}
		if owners["a1"] != uint32(alice.uid) || owners["b1"] != uint32(bob.uid) || owners["r1"] != 0 {
			t.Errorf("owners in root's vm ls -o json: %v", owners)
		}
		if ls := e.mustBanger("vm", "snapshot", "ls"); !regexp.MustCompile(`snap-a\s+`+alice.name).MatchString(ls) || !regexp.MustCompile(`snap-b\s+`+bob.name).MatchString(ls) {
			t.Errorf("root's snapshot ls:\n%s", ls)
		}
	})

	t.Run("alice's image is hers until she shares it; a used image stays", func(t *testing.T) {
		defer e.use(t)()
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644)
		b, err := os.ReadFile(testkit.Mkfs(t, root, "8M"))
		if err != nil {
			t.Fatal(err)
		}
		disk := filepath.Join(alice.home, "disk.ext4")
		os.WriteFile(disk, b, 0o600)
		os.Chown(disk, alice.uid, alice.gid)
		e.mustBangerAs(alice, "", "image", "register", "alices", "--rootfs", disk)
		if ls := e.mustBangerAs(bob, "", "image", "ls"); strings.Contains(ls, "alices") {
			t.Errorf("bob sees alice's image:\n%s", ls)
		}
		if _, errOut, code := e.bangerAs(bob, "", "image", "show", "alices"); code == 0 || !strings.Contains(errOut, "alices") {
			t.Errorf("bob's image show of alice's: exit %d %s", code, errOut)
		}
		if _, errOut, code := e.bangerAs(bob, "", "image", "share", "alices"); code == 0 {
			t.Errorf("bob shared alice's image: %s", errOut)
		}
		e.mustBangerAs(alice, "", "image", "share", "alices")
		if ls := e.mustBangerAs(bob, "", "image", "ls"); !strings.Contains(ls, "alices") {
			t.Errorf("bob does not see the shared image:\n%s", ls)
		}
		if _, errOut, code := e.bangerAs(bob, "", "image", "rm", "alices"); code == 0 || !strings.Contains(errOut, "only they or root") {
			t.Errorf("bob's rm of alice's shared image: exit %d %s", code, errOut)
		}
		// The catalog image is everyone's cache, and stays while used:
		// bob learns only that another user's VM uses it.
		_, errOut, code := e.bangerAs(bob, "", "image", "rm", "git")
		if code == 0 || !strings.Contains(errOut, "in use") || strings.Contains(errOut, "a1") || strings.Contains(errOut, "r1") {
			t.Errorf("bob's rm of the used catalog image: exit %d %s", code, errOut)
		}
		if findImage(t, listImages(t, e), "git").Name != "git" {
			t.Error("the used image is gone")
		}
	})
}
