package seed

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

var needGit = testkit.NeedGit

func run(t *testing.T, dir string, args ...string) { testkit.Git(t, dir, args...) }

func entries(t *testing.T, p *Plan) map[string]*tar.Header {
	t.Helper()
	var buf bytes.Buffer
	if err := p.Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	out := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out[h.Name] = h
	}
	return out
}

func TestPlanGitCheckout(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	w := func(name, body string, mode os.FileMode) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), mode)
	}
	run(t, dir, "init", "-q", "-b", "main")
	w("tracked.txt", "t\n", 0o644)
	w("gone.txt", "g\n", 0o644)
	w("sub/dir/x.sh", "#!/bin/sh\n", 0o755)
	w(".gitignore", "*.log\nbuild/\n", 0o644)
	run(t, dir, "add", ".")
	run(t, dir, "commit", "-q", "-m", "c")
	os.Remove(filepath.Join(dir, "gone.txt"))
	w("untracked.txt", "u\n", 0o644)
	w("debug.log", "ignored\n", 0o644)
	w("build/out.bin", "ignored\n", 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "abs-link"))
	run(t, dir, "config", "credential.helper", "store")
	run(t, dir, "remote", "add", "origin", "https://bob:tok@example.com/x.git")

	p, err := Find(context.Background(), filepath.Join(dir, "sub"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Git || p.Root != dir || p.Branch != "main" || len(p.Base) != 40 {
		t.Fatalf("plan = %+v", p)
	}
	got := entries(t, p)
	var names []string
	for n := range got {
		if !strings.HasPrefix(n, ".git/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	want := []string{".gitignore", "abs-link", "sub/", "sub/dir/", "sub/dir/x.sh", "tracked.txt", "untracked.txt"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("seeded %v, want %v", names, want)
	}
	if h := got["abs-link"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/passwd" {
		t.Errorf("link seeded as %+v", h)
	}
	if h := got["sub/dir/x.sh"]; h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Errorf("x.sh seeded with mode %o uid %d", h.Mode, h.Uid)
	}
	for _, must := range []string{".git/HEAD", ".git/index", ".git/config"} {
		if got[must] == nil {
			t.Errorf("%s not seeded", must)
		}
	}
	// The config that travels has no credentials.
	var buf bytes.Buffer
	p.Write(context.Background(), &buf)
	if bytes.Contains(buf.Bytes(), []byte("bob:tok")) || bytes.Contains(buf.Bytes(), []byte("helper")) {
		t.Error("credentials in the seed")
	}
	if !bytes.Contains(buf.Bytes(), []byte("https://example.com/x.git")) {
		t.Error("the remote's URL did not travel")
	}
	var again bytes.Buffer
	p.Write(context.Background(), &again)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two writes of the same plan differ: the fingerprint would too")
	}
}

func TestSanitizeConfig(t *testing.T) {
	in := `[core]
	bare = false
[remote "origin"]
	url = https://user:ghp_secret@github.com/o/r.git
	pushurl = ssh://git@github.com/o/r.git
[credential]
	helper = store
[credential "https://example.com"]
	username = me
[http "https://example.com/"]
	extraHeader = Authorization: Bearer tok
[include]
	path = ~/.secret.inc
[user]
	name = Me
`
	out := string(SanitizeConfig([]byte(in)))
	for _, gone := range []string{"ghp_secret", "helper", "username = me", "Bearer", ".secret.inc"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q survived:\n%s", gone, out)
		}
	}
	for _, kept := range []string{"url = https://github.com/o/r.git", "name = Me", "[remote \"origin\"]", "bare = false"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q lost:\n%s", kept, out)
		}
	}
}

func TestCheckSizeNamesLargestFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "big.bin"), make([]byte, 3000), 0o644)
	os.WriteFile(filepath.Join(dir, "mid.bin"), make([]byte, 1000), 0o644)
	os.WriteFile(filepath.Join(dir, "small"), []byte("s"), 0o644)
	p, err := Find(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Git || p.Bytes != 4001 {
		t.Fatalf("plan = %+v", p)
	}
	if err := p.CheckSize(5000); err != nil {
		t.Error(err)
	}
	err = p.CheckSize(2000)
	if err == nil || !strings.Contains(err.Error(), "the largest: big.bin (2.9 KiB), mid.bin") {
		t.Errorf("err = %v", err)
	}
}

func TestUnreadableFileFailsBeforeSending(t *testing.T) {
	// Root reads anything: as root, the test runs again as nobody.
	if testkit.AsNobody(t) {
		return
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o000)
	p, err := Find(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckReadable(); err == nil || !strings.Contains(err.Error(), "cannot read secret") {
		t.Errorf("err = %v", err)
	}
}

func TestLinkedWorktreeIsRefused(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	run(t, dir, "init", "-q", "-b", "main")
	run(t, dir, "commit", "-q", "--allow-empty", "-m", "c")
	wt := filepath.Join(t.TempDir(), "wt")
	run(t, dir, "worktree", "add", "-q", wt)
	if _, err := Find(context.Background(), wt); err == nil || !strings.Contains(err.Error(), "linked worktree") {
		t.Errorf("err = %v", err)
	}
}

// TestSeedCommit: the seed carries a commit of the working tree exactly
// as seeded (the host's uncommitted and untracked changes on HEAD), its
// objects and refs/banger/seed in the seeded .git; the host's repository
// gains no object, ref or index change; two plans of the same files make
// the same commit.
func TestSeedCommit(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	w := func(name, body string) { os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644) }
	run(t, dir, "init", "-q", "-b", "main")
	w("a.txt", "a1\n")
	w(".gitignore", "*.log\n")
	run(t, dir, "add", ".")
	run(t, dir, "commit", "-q", "-m", "c")
	w("a.txt", "a2 host's own, uncommitted\n")
	w("new.txt", "untracked\n")
	w("x.log", "ignored\n")
	objectsBefore := countFiles(t, filepath.Join(dir, ".git", "objects"))
	index, _ := os.ReadFile(filepath.Join(dir, ".git", "index"))

	p, err := Find(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.SeedCommit) != 40 {
		t.Fatalf("seed commit %q", p.SeedCommit)
	}
	if err := p.CheckReadable(); err != nil {
		t.Fatalf("the seed commit's objects, read from where they were made: %v", err)
	}
	// The seed, unpacked as the guest's /work, holds the commit, whose
	// tree is the working tree as seeded.
	guest := t.TempDir()
	var buf bytes.Buffer
	if err := p.Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		dst := filepath.Join(guest, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(dst), 0o755)
			b, _ := io.ReadAll(tr)
			os.WriteFile(dst, b, os.FileMode(h.Mode))
		}
	}
	ref, _ := os.ReadFile(filepath.Join(guest, ".git/refs/banger/seed"))
	if strings.TrimSpace(string(ref)) != p.SeedCommit {
		t.Errorf("refs/banger/seed holds %q, want %s", ref, p.SeedCommit)
	}
	files := testkit.Git(t, guest, "ls-tree", "-r", "--name-only", "refs/banger/seed")
	if files != ".gitignore\na.txt\nnew.txt\n" {
		t.Errorf("the seed commit holds %q", files)
	}
	if a := testkit.Git(t, guest, "show", "refs/banger/seed:a.txt"); a != "a2 host's own, uncommitted\n" {
		t.Errorf("a.txt in the seed commit: %q", a)
	}
	if parent := testkit.Git(t, guest, "rev-parse", "refs/banger/seed^"); strings.TrimSpace(parent) != p.Base {
		t.Errorf("the seed commit's parent %q, want HEAD %s", parent, p.Base)
	}
	// The host's repository is as it was.
	if n := countFiles(t, filepath.Join(dir, ".git", "objects")); n != objectsBefore {
		t.Errorf("the host's object store went from %d files to %d", objectsBefore, n)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, ".git", "index")); !bytes.Equal(after, index) {
		t.Error("the host's index changed")
	}
	if _, err := os.Stat(filepath.Join(dir, ".git/refs/banger")); err == nil {
		t.Error("a ref was written in the host's repository")
	}
	// Same files, same commit.
	p2, err := Find(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if p2.SeedCommit != p.SeedCommit {
		t.Errorf("two plans of the same files made commits %s and %s", p.SeedCommit, p2.SeedCommit)
	}
	tmp := p.tmp
	p.Close()
	if _, err := os.Stat(tmp); err == nil {
		t.Error("Close left the seed commit's objects")
	}
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
