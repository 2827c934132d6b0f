// Package gitwork brings a VM's /work back to the host: it unpacks the
// work's tar stream into a private directory, takes away everything of
// the guest's repository that could make the host's git run code or read
// outside it (config, hooks, alternates), and then answers with git what
// changed since the seed and makes a branch of it in the host repository.
//
// The guest is hostile: its repository is data here, never configuration.
package gitwork

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/banger-dev/banger/internal/format/tarx"
)

// Work is a VM's /work unpacked on the host.
type Work struct {
	Dir string
	// Head is the guest's HEAD commit, "" when it has none.
	Head string
	// Tip is Head plus, when the working tree differs from it, one commit
	// holding the uncommitted changes; "" when there is nothing at all.
	Tip string
	// Dirty says Tip holds uncommitted changes on top of Head.
	Dirty bool
}

// Unpack extracts the tar stream r under dir (which must be empty and
// private to the caller), at most limit bytes of content.
//
// known is the host repository's object directory, or "": git objects
// the host has already (a loose object, or a pack, by the same name,
// which is a hash of its content) are not written again; Open points
// the copy at the host's. Most of a seeded repository's objects are the
// seed's own, and on a slow file system each file written costs.
func Unpack(r io.Reader, dir string, limit int64, known string) error {
	ex := tarx.Extractor{Root: dir, Limit: limit}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// Past the archive's end marker to the stream's own end: the
			// daemon reports an error that came after the stream began
			// there, and an archive ended early must not pass for whole.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return fmt.Errorf("read the work stream: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the work stream: %w", err)
		}
		rel, err := tarx.Clean(hdr.Name)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		default:
			continue
		}
		if hdr.Typeflag == tar.TypeReg && known != "" && hostHas(known, rel) {
			continue
		}
		if err := ex.Entry(rel, hdr, tr); err != nil {
			return err
		}
	}
}

var (
	looseObject = regexp.MustCompile(`^\.git/objects/([0-9a-f]{2}/[0-9a-f]{38,62})$`)
	packFile    = regexp.MustCompile(`^\.git/objects/pack/(pack-[0-9a-f]{40,64})\.(pack|idx|rev)$`)
)

// hostHas says whether the object file at rel (in the guest's work) is
// in the host's object directory too.
func hostHas(objects, rel string) bool {
	if m := looseObject.FindStringSubmatch(rel); m != nil {
		fi, err := os.Stat(filepath.Join(objects, filepath.FromSlash(m[1])))
		return err == nil && fi.Mode().IsRegular()
	}
	if m := packFile.FindStringSubmatch(rel); m != nil {
		for _, ext := range []string{".pack", ".idx"} {
			if fi, err := os.Stat(filepath.Join(objects, "pack", m[1]+ext)); err != nil || !fi.Mode().IsRegular() {
				return false
			}
		}
		return true
	}
	return false
}

// HostObjects is the object directory of the host repository at repo.
func HostObjects(ctx context.Context, repo string) (string, error) {
	out, err := HostGit(ctx, repo, "rev-parse", "--path-format=absolute", "--git-common-dir")
	if err != nil {
		return "", err
	}
	return filepath.Join(strings.TrimSpace(out), "objects"), nil
}

// Open makes the unpacked work at dir safe for git and reads its state.
// identity is "Name <email>" for the commit of uncommitted changes;
// known is what Unpack was given.
func Open(ctx context.Context, dir, vm, identity, known string) (*Work, error) {
	gd := filepath.Join(dir, ".git")
	fi, err := os.Lstat(gd)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("/work in vm %s is not a git checkout (no .git directory)", vm)
	}
	if err := defuse(gd); err != nil {
		return nil, err
	}
	if known != "" {
		// Ours, not the guest's (defuse removed theirs): the host's own
		// objects, for the ones Unpack did not write.
		info := filepath.Join(gd, "objects", "info")
		if err := os.MkdirAll(info, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(info, "alternates"), []byte(known+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	w := &Work{Dir: dir}
	if out, err := w.git(ctx, nil, "rev-parse", "-q", "--verify", "HEAD^{commit}"); err == nil {
		w.Head = strings.TrimSpace(out)
	}
	// The uncommitted state, as `git add -A` would stage it, into an index
	// of our own: the guest's index is only the starting point.
	index := dir + ".index" // beside the tree, not in it
	if b, err := os.ReadFile(filepath.Join(gd, "index")); err == nil {
		if err := os.WriteFile(index, b, 0o600); err != nil {
			return nil, err
		}
	}
	env := []string{"GIT_INDEX_FILE=" + index}
	if _, err := w.git(ctx, env, "add", "-A"); err != nil {
		return nil, fmt.Errorf("read uncommitted changes in vm %s: %w", vm, err)
	}
	tree, err := w.git(ctx, env, "write-tree")
	if err != nil {
		return nil, err
	}
	tree = strings.TrimSpace(tree)
	headTree := ""
	if w.Head != "" {
		out, _ := w.git(ctx, nil, "rev-parse", w.Head+"^{tree}")
		headTree = strings.TrimSpace(out)
	}
	w.Tip = w.Head
	if tree != headTree && !(w.Head == "" && tree == EmptyTree) {
		args := []string{"commit-tree", tree, "-m", "Uncommitted work in vm " + vm + "\n\nMade by banger from the working tree of /work in the VM."}
		if w.Head != "" {
			args = append(args, "-p", w.Head)
		}
		name, email := splitIdentity(identity)
		out, err := w.git(ctx, []string{"GIT_AUTHOR_NAME=" + name, "GIT_AUTHOR_EMAIL=" + email, "GIT_COMMITTER_NAME=" + name, "GIT_COMMITTER_EMAIL=" + email}, args...)
		if err != nil {
			return nil, err
		}
		w.Tip, w.Dirty = strings.TrimSpace(out), true
	}
	return w, nil
}

// EmptyTree is git's empty tree (SHA-1), what a first commit is diffed
// against.
const EmptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

func splitIdentity(id string) (name, email string) {
	name, email = "banger", "banger@localhost"
	if n, e, ok := strings.Cut(id, "<"); ok && strings.TrimSpace(n) != "" {
		name, email = strings.TrimSpace(n), strings.TrimSuffix(strings.TrimSpace(e), ">")
	}
	return name, email
}

// defuse removes what would make git run the guest's code or reach
// outside the copy: the config (aliases, hooks path, fsmonitor, filters,
// pagers), hooks, alternates, and any link inside .git. A config of our
// own keeps only the object format.
func defuse(gd string) error {
	format := ""
	if b, err := os.ReadFile(filepath.Join(gd, "config")); err == nil {
		format = objectFormat(string(b))
	}
	for _, p := range []string{"config", "config.worktree", "hooks", "commondir", "objects/info/alternates", "objects/info/http-alternates", "info/attributes"} {
		if err := os.RemoveAll(filepath.Join(gd, p)); err != nil {
			return err
		}
	}
	err := filepath.WalkDir(gd, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			rel, _ := filepath.Rel(filepath.Dir(gd), p)
			return fmt.Errorf("the guest's repository has a symbolic link at %s: refusing to read it", rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	cfg := "[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
	if format == "sha256" {
		cfg = "[core]\n\trepositoryformatversion = 1\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n"
	}
	return os.WriteFile(filepath.Join(gd, "config"), []byte(cfg), 0o600)
}

// objectFormat finds extensions.objectformat in a config file's text.
func objectFormat(cfg string) string {
	in := false
	for _, line := range strings.Split(cfg, "\n") {
		t := strings.ToLower(strings.TrimSpace(line))
		if strings.HasPrefix(t, "[") {
			in = strings.HasPrefix(t, "[extensions]")
			continue
		}
		if k, v, ok := strings.Cut(t, "="); in && ok && strings.TrimSpace(k) == "objectformat" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Env is the environment git runs in over a guest's repository: none of
// the host's git configuration or variables, no prompts, no hooks.
func (w *Work) Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(append(env,
		"GIT_DIR="+filepath.Join(w.Dir, ".git"), "GIT_WORK_TREE="+w.Dir,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_ATTR_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "GIT_CEILING_DIRECTORIES="+filepath.Dir(w.Dir),
	), extra...)
}

// Args prefixes git arguments with settings that keep the guest's
// repository inert even if something above were missed.
func Args(args ...string) []string {
	return append([]string{"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.allow=never",
		"-c", "core.pager=cat", "-c", "core.untrackedCache=false"}, args...)
}

func (w *Work) git(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", Args(args...)...)
	cmd.Dir = w.Dir
	cmd.Env = w.Env(env...)
	return output(cmd, args[0])
}

// output runs a git command and returns its standard output, or an error
// carrying what git said.
func output(cmd *exec.Cmd, verb string) (string, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", verb, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Cmd is a git command over the guest's repository, writing to the given
// streams (vm diff's output, colored when stdout is a terminal).
func (w *Work) Cmd(ctx context.Context, stdout, stderr io.Writer, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", Args(args...)...)
	cmd.Dir = w.Dir
	cmd.Env = w.Env()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd
}

// HasCommit says whether the guest's repository holds commit c.
func (w *Work) HasCommit(ctx context.Context, c string) bool {
	_, err := w.git(ctx, nil, "cat-file", "-e", c+"^{commit}")
	return err == nil
}

// IsAncestor says whether a is an ancestor of b (or b itself).
func (w *Work) IsAncestor(ctx context.Context, a, b string) bool {
	_, err := w.git(ctx, nil, "merge-base", "--is-ancestor", a, b)
	return err == nil
}

// Commits lists the commits in base..tip, oldest last, one line each.
func (w *Work) Commits(ctx context.Context, base, tip string) ([]string, error) {
	rng := tip
	if base != "" {
		rng = base + ".." + tip
	}
	out, err := w.git(ctx, nil, "log", "--format=%h %s", rng)
	if err != nil {
		return nil, err
	}
	return lines(out), nil
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// ErrBranchExists is returned by Pull when the branch exists and force is
// not set.
var ErrBranchExists = errors.New("branch exists")

// Pull makes branch in the host repository at repo point at the work's
// Tip, fetching its objects. The host's working tree, index and other
// refs are not touched. force replaces an existing branch (never the
// checked-out one).
func (w *Work) Pull(ctx context.Context, repo, branch string, force bool) error {
	if w.Tip == "" {
		return fmt.Errorf("the guest's repository has no commits and no files: nothing to pull")
	}
	if _, err := HostGit(ctx, repo, "check-ref-format", "--branch", branch); err != nil {
		return fmt.Errorf("%q is not a valid branch name", branch)
	}
	ref := "refs/heads/" + branch
	if old, err := HostGit(ctx, repo, "rev-parse", "-q", "--verify", ref); err == nil {
		if !force {
			return fmt.Errorf("branch %s exists already (at %.12s): pass --force to replace it, or --branch to name another: %w", branch, strings.TrimSpace(old), ErrBranchExists)
		}
		if cur, err := HostGit(ctx, repo, "symbolic-ref", "-q", "HEAD"); err == nil && strings.TrimSpace(cur) == ref {
			return fmt.Errorf("branch %s is checked out here: switch to another branch before replacing it", branch)
		}
	}
	if _, err := w.git(ctx, nil, "update-ref", "refs/banger/pull", w.Tip); err != nil {
		return err
	}
	// The host's git fetches from the unpacked copy, whose config is ours:
	// nothing of the guest's runs.
	if _, err := HostGit(ctx, repo, "fetch", "--no-tags", "--no-write-fetch-head", "--quiet", filepath.Join(w.Dir, ".git"), "+refs/banger/pull:"+ref); err != nil {
		return fmt.Errorf("bring the work into %s: %w", repo, err)
	}
	return nil
}

// HostGit runs git in a host directory (the user's own repository, or
// the one being seeded), with the user's own configuration: it is theirs.
func HostGit(ctx context.Context, dir string, args ...string) (string, error) {
	return output(exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...), args[0])
}
