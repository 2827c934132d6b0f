package gitwork

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/format/worktar"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

var (
	needGit = testkit.NeedGit
	git     = testkit.Git
)

// guestRepo is a "guest's" /work: a commit, a later commit, uncommitted
// edits; extra shapes it.
func guestRepo(t *testing.T, extra func(dir string)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "guest")
	os.MkdirAll(dir, 0o755)
	git(t, dir, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a\n"), 0o644)
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "base")
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a2\n"), 0o644)
	git(t, dir, "commit", "-q", "-am", "guest commit")
	os.WriteFile(filepath.Join(dir, "new.txt"), []byte("new\n"), 0o644)
	if extra != nil {
		extra(dir)
	}
	return dir
}

// fetch goes the way vm pull does: the guest's tree as tar, unpacked and
// opened on the host.
func fetch(t *testing.T, guest string) (*Work, error) {
	return fetchKnown(t, guest, "")
}

// fetchKnown is fetch with the host's object directory given, as vm pull
// does.
func fetchKnown(t *testing.T, guest, known string) (*Work, error) {
	t.Helper()
	var buf bytes.Buffer
	if err := worktar.Write(context.Background(), guest, &buf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "work")
	os.Mkdir(dir, 0o700)
	if err := Unpack(&buf, dir, 1<<30, known); err != nil {
		return nil, err
	}
	return Open(context.Background(), dir, "vm1", "Host User <host@example.com>", known)
}

func TestPullMakesABranchAndTouchesNothingElse(t *testing.T) {
	needGit(t)
	guest := guestRepo(t, nil)
	base := strings.TrimSpace(git(t, guest, "rev-parse", "HEAD~1"))
	host := filepath.Join(t.TempDir(), "host")
	git(t, filepath.Dir(host), "clone", "-q", guest, host)
	git(t, host, "reset", "-q", "--hard", base)
	os.WriteFile(filepath.Join(host, "mine.txt"), []byte("host work\n"), 0o644)
	before := git(t, host, "status", "--porcelain=v2")

	known := filepath.Join(host, ".git", "objects")
	w, err := fetchKnown(t, guest, known)
	if err != nil {
		t.Fatal(err)
	}
	// The objects the host has were not written again.
	loose := func(dir string) int {
		n := 0
		filepath.WalkDir(filepath.Join(dir, ".git", "objects"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && len(filepath.Base(filepath.Dir(p))) == 2 {
				n++
			}
			return nil
		})
		return n
	}
	if loose(w.Dir) >= loose(guest) {
		t.Errorf("the copy has %d loose objects, the guest %d: known ones were written again", loose(w.Dir), loose(guest))
	}
	if !w.Dirty || w.Head == "" || w.Tip == w.Head {
		t.Fatalf("work = %+v", w)
	}
	if err := w.Pull(context.Background(), host, "banger/vm1", false); err != nil {
		t.Fatal(err)
	}
	if got := git(t, host, "log", "--format=%s|%an", "banger/vm1"); got != "Uncommitted work in vm vm1|Host User\nguest commit|T\nbase|T\n" {
		t.Errorf("branch log:\n%s", got)
	}
	if got := git(t, host, "show", "banger/vm1:new.txt"); got != "new\n" {
		t.Errorf("new.txt = %q", got)
	}
	if after := git(t, host, "status", "--porcelain=v2"); after != before {
		t.Errorf("host status changed:\n%s\n%s", before, after)
	}
	if err := w.Pull(context.Background(), host, "banger/vm1", false); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("second pull: %v", err)
	}
	if err := w.Pull(context.Background(), host, "banger/vm1", true); err != nil {
		t.Errorf("forced pull: %v", err)
	}
	if err := w.Pull(context.Background(), host, "bad..name", false); err == nil {
		t.Error("a bad branch name was taken")
	}
	commits, _ := w.Commits(context.Background(), base, w.Tip)
	if len(commits) != 2 || !w.IsAncestor(context.Background(), base, w.Tip) {
		t.Errorf("commits since base: %v", commits)
	}
}

// A guest's repository is data: nothing in it runs on the host, and it
// reaches nothing outside itself.
func TestHostileGuestRepository(t *testing.T) {
	needGit(t)
	marker := filepath.Join(t.TempDir(), "pwned")
	other := guestRepo(t, nil) // a repository on the host the guest names
	for _, tc := range []struct {
		name    string
		shape   func(dir string)
		wantErr string
	}{
		{"config runs commands", func(dir string) {
			cfg := "\n[core]\n\tfsmonitor = touch " + marker + "\n\tpager = touch " + marker + "\n\thooksPath = hooks2\n" +
				"[filter \"evil\"]\n\tclean = touch " + marker + "\n\tsmudge = touch " + marker + "\n\trequired = true\n" +
				"[diff \"evil\"]\n\ttextconv = touch " + marker + "\n[alias]\n\tadd = !touch " + marker + "\n"
			f, _ := os.OpenFile(filepath.Join(dir, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(cfg)
			f.Close()
			os.WriteFile(filepath.Join(dir, ".gitattributes"), []byte("* filter=evil diff=evil\n"), 0o644)
			os.MkdirAll(filepath.Join(dir, "hooks2"), 0o755)
			for _, h := range []string{".git/hooks/pre-commit", ".git/hooks/post-index-change", "hooks2/post-index-change"} {
				os.WriteFile(filepath.Join(dir, h), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755)
			}
		}, ""},
		{"alternates name a host repository", func(dir string) {
			os.WriteFile(filepath.Join(dir, ".git", "objects", "info", "alternates"), []byte(filepath.Join(other, ".git", "objects")+"\n"), 0o644)
		}, ""},
		{"a link inside .git", func(dir string) {
			os.Symlink("/etc", filepath.Join(dir, ".git", "refs", "etc"))
		}, "symbolic link"},
		{".git is a file", func(dir string) {
			os.RemoveAll(filepath.Join(dir, ".git"))
			os.WriteFile(filepath.Join(dir, ".git"), []byte("gitdir: "+filepath.Join(other, ".git")+"\n"), 0o644)
		}, "not a git checkout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker = filepath.Join(t.TempDir(), "pwned") // the shapes read it now
			guest := guestRepo(t, tc.shape)
			w, err := fetch(t, guest)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			host := filepath.Join(t.TempDir(), "host")
			git(t, filepath.Dir(host), "init", "-q", host)
			if err := w.Pull(context.Background(), host, "banger/vm1", false); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w.Cmd(context.Background(), &out, &out, "diff", "--patch", w.Head, w.Tip).Run()
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the guest's repository ran a command on the host")
			}
		})
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../x", "/etc/x", "a/../../x"} {
		var buf bytes.Buffer
		tw := newTar(&buf, name)
		tw.Close()
		if err := Unpack(&buf, t.TempDir(), 1<<20, ""); err == nil {
			t.Errorf("%s: unpacked", name)
		}
	}
}

func newTar(w *bytes.Buffer, name string) *tar.Writer {
	tw := tar.NewWriter(w)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	return tw
}
