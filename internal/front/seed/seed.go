// Package seed is the client's half of seeding a VM's /work: it finds what
// to seed (a git checkout: its whole .git and the working tree exactly as
// it is, minus what .gitignore excludes; or a plain directory), checks it
// can read all of it, and writes it as a tar stream, read with the
// caller's own rights. The daemon builds the work disk from the stream.
package seed

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/banger-dev/banger/internal/front/gitwork"
)

// File is one entry to seed, by its slash path relative to the root.
type File struct {
	Path string
	Info fs.FileInfo
	// Src, when set, is where the entry's content is read from, outside
	// the root (the seed commit's objects).
	Src string
}

// Plan is what a seed will hold.
type Plan struct {
	// Root is the directory seeded: the checkout's top level for git.
	Root string
	Git  bool
	// Base is HEAD's commit ("" for a plain directory or an unborn
	// branch); Branch the checked-out branch, if any.
	Base, Branch string
	Files        []File
	// Bytes is the regular files' content.
	Bytes int64
	// SeedCommit is a commit of the working tree exactly as seeded (on
	// Base), whose objects the seed carries in .git and names
	// refs/banger/seed: vm diff --since-seed tells the VM's changes from
	// the host's own uncommitted work, seeded with them. "" for a plain
	// directory.
	SeedCommit string
	// tmp holds the seed commit's objects until Close.
	tmp string
}

// Close removes what the plan made to be seeded.
func (p *Plan) Close() error {
	if p.tmp == "" {
		return nil
	}
	return os.RemoveAll(p.tmp)
}

// Count is how many files, links and directories the plan holds.
func (p *Plan) Count() int { return len(p.Files) }

// Find plans the seed of dir: its git checkout when it is in one,
// otherwise the directory itself.
func Find(ctx context.Context, dir string) (*Plan, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("seed %s: not a directory", dir)
	}
	top, err := gitwork.HostGit(ctx, abs, "rev-parse", "--show-toplevel")
	if err != nil {
		return planDir(abs)
	}
	return planGit(ctx, strings.TrimSpace(top))
}

// InCheckout reports whether dir is inside a git checkout.
func InCheckout(ctx context.Context, dir string) bool {
	_, err := gitwork.HostGit(ctx, dir, "rev-parse", "--show-toplevel")
	return err == nil
}

func planGit(ctx context.Context, root string) (*Plan, error) {
	gi, err := os.Lstat(filepath.Join(root, ".git"))
	if err != nil {
		return nil, err
	}
	if !gi.IsDir() {
		// A linked worktree or a submodule: .git is a file naming a
		// directory elsewhere, which would not come along.
		return nil, fmt.Errorf("seed %s: .git is a file (a linked worktree or a submodule), which cannot be seeded yet: run from the main checkout, or pass --workdir with a plain directory or --no-workdir", root)
	}
	p := &Plan{Root: root, Git: true}
	if out, err := gitwork.HostGit(ctx, root, "rev-parse", "-q", "--verify", "HEAD^{commit}"); err == nil {
		p.Base = strings.TrimSpace(out)
	}
	if out, err := gitwork.HostGit(ctx, root, "symbolic-ref", "-q", "--short", "HEAD"); err == nil {
		p.Branch = strings.TrimSpace(out)
	}
	// Tracked (staged or not) and untracked files that .gitignore does
	// not exclude; a tracked file deleted in the working tree is absent
	// from it, as it is on the host.
	out, err := gitwork.HostGit(ctx, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var paths []string
	for _, f := range strings.Split(out, "\x00") {
		if f != "" && !seen[f] {
			seen[f] = true
			paths = append(paths, f)
		}
	}
	if err := p.add(paths); err != nil {
		return nil, err
	}
	if err := p.walk(".git"); err != nil {
		return nil, err
	}
	if err := p.seedCommit(ctx); err != nil {
		p.Close()
		return nil, err
	}
	p.sort()
	return p, nil
}

// seedRef names the seed commit in the seeded repository.
const seedRef = ".git/refs/banger/seed"

// seedCommit commits the working tree as it is seeded (tracked and
// untracked files .gitignore lets through, as `git add -A` stages them)
// on HEAD, with an index and an object directory of its own: the host's
// repository gains no object, ref or index change (git may freshen the
// time of an object it finds there, as any add does). The new objects
// (the changed and untracked files', the trees', the commit) join the
// seed's .git with a ref to the commit.
func (p *Plan) seedCommit(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "banger-seed-*")
	if err != nil {
		return err
	}
	p.tmp = tmp
	objects := filepath.Join(tmp, "objects")
	// git takes a repository whose object directory is missing for none.
	if err := os.Mkdir(objects, 0o755); err != nil {
		return err
	}
	env := append(os.Environ(), "GIT_INDEX_FILE="+filepath.Join(tmp, "index"), "GIT_OBJECT_DIRECTORY="+objects,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES="+filepath.Join(p.Root, ".git", "objects"),
		"GIT_AUTHOR_NAME=banger", "GIT_AUTHOR_EMAIL=banger@localhost", "GIT_COMMITTER_NAME=banger", "GIT_COMMITTER_EMAIL=banger@localhost",
		// A fixed date: the commit, and so the seed's fingerprint, is the
		// same for the same files.
		"GIT_AUTHOR_DATE=@0 +0000", "GIT_COMMITTER_DATE=@0 +0000")
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", p.Root}, args...)...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("seed %s: git %s: %v: %s", p.Root, args[0], err, bytes.TrimSpace(stderr.Bytes()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	// The host's index as the start (a copy: the host's is not written),
	// so that add hashes only what changed since git last looked; else
	// HEAD's tree.
	if b, err := os.ReadFile(filepath.Join(p.Root, ".git", "index")); err == nil {
		if err := os.WriteFile(filepath.Join(tmp, "index"), b, 0o600); err != nil {
			return err
		}
	} else if p.Base != "" {
		if _, err := git("read-tree", p.Base); err != nil {
			return err
		}
	}
	if _, err := git("add", "-A"); err != nil {
		return err
	}
	tree, err := git("write-tree")
	if err != nil {
		return err
	}
	args := []string{"commit-tree", tree, "-m", "The working tree as banger seeded it\n\nThe host's uncommitted changes, on HEAD: vm diff --since-seed shows the VM's work since."}
	if p.Base != "" {
		args = append(args, "-p", p.Base)
	}
	if p.SeedCommit, err = git(args...); err != nil {
		return err
	}
	ref := filepath.Join(tmp, "seed-ref")
	if err := os.WriteFile(ref, []byte(p.SeedCommit+"\n"), 0o644); err != nil {
		return err
	}
	return p.addOutside(objects, ".git/objects", ref)
}

// addOutside plans the loose objects under objects as entries under
// into, and ref as the seed's ref, each read from where it is.
func (p *Plan) addOutside(objects, into, ref string) error {
	have := map[string]bool{}
	for _, f := range p.Files {
		have[f.Path] = true
	}
	dirs, err := os.ReadDir(objects)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 2 {
			continue // info/, pack/: a commit-tree writes loose objects only
		}
		files, err := os.ReadDir(filepath.Join(objects, d.Name()))
		if err != nil {
			return err
		}
		dir := into + "/" + d.Name()
		if !have[dir] {
			fi, err := os.Stat(filepath.Join(objects, d.Name()))
			if err != nil {
				return err
			}
			p.Files = append(p.Files, File{Path: dir, Info: fi, Src: filepath.Join(objects, d.Name())})
			have[dir] = true
		}
		for _, f := range files {
			src := filepath.Join(objects, d.Name(), f.Name())
			fi, err := os.Lstat(src)
			if err != nil || !fi.Mode().IsRegular() || have[dir+"/"+f.Name()] {
				continue
			}
			p.push(dir+"/"+f.Name(), fi)
			p.Files[len(p.Files)-1].Src = src
		}
	}
	for _, d := range []string{".git/refs", ".git/refs/banger"} {
		if !have[d] {
			fi, err := os.Stat(filepath.Dir(ref))
			if err != nil {
				return err
			}
			p.Files = append(p.Files, File{Path: d, Info: fi, Src: filepath.Dir(ref)})
		}
	}
	fi, err := os.Lstat(ref)
	if err != nil {
		return err
	}
	if have[seedRef] {
		// A ref of that name in the host's repository: the seed's wins.
		p.Files = slices.DeleteFunc(p.Files, func(f File) bool { return f.Path == seedRef })
	}
	p.push(seedRef, fi)
	p.Files[len(p.Files)-1].Src = ref
	return nil
}

func planDir(root string) (*Plan, error) {
	p := &Plan{Root: root}
	if err := p.walk("."); err != nil {
		return nil, err
	}
	p.sort()
	return p, nil
}

// add plans the given paths and the directories above them.
func (p *Plan) add(paths []string) error {
	dirs := map[string]bool{}
	for _, rel := range paths {
		fi, err := os.Lstat(filepath.Join(p.Root, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return fmt.Errorf("seed %s: %w", rel, err)
		}
		if fi.IsDir() {
			// A submodule's directory: its content is another repository.
			continue
		}
		if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
		p.push(rel, fi)
	}
	for d := range dirs {
		fi, err := os.Lstat(filepath.Join(p.Root, filepath.FromSlash(d)))
		if err != nil {
			return fmt.Errorf("seed %s: %w", d, err)
		}
		p.Files = append(p.Files, File{Path: d, Info: fi})
	}
	return nil
}

// walk plans everything under rel: files, links (never followed) and
// directories.
func (p *Plan) walk(rel string) error {
	return filepath.WalkDir(filepath.Join(p.Root, rel), func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		r, err := filepath.Rel(p.Root, full)
		if err != nil || r == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("seed %s: %w", r, err)
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
			return nil // sockets (git's fsmonitor), fifos, devices
		}
		p.push(filepath.ToSlash(r), fi)
		return nil
	})
}

func (p *Plan) push(rel string, fi fs.FileInfo) {
	p.Files = append(p.Files, File{Path: rel, Info: fi})
	if fi.Mode().IsRegular() {
		p.Bytes += fi.Size()
	}
}

// sort orders entries so that a directory comes before what it holds,
// and the stream (and so its fingerprint) depends only on the files.
func (p *Plan) sort() {
	sort.Slice(p.Files, func(i, j int) bool { return p.Files[i].Path < p.Files[j].Path })
}

// CheckSize refuses a plan larger than limit, naming its largest files.
func (p *Plan) CheckSize(limit int64) error {
	if limit <= 0 || p.Bytes <= limit {
		return nil
	}
	files := append([]File(nil), p.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Info.Size() > files[j].Info.Size() })
	var big []string
	for _, f := range files[:min(5, len(files))] {
		big = append(big, fmt.Sprintf("%s (%s)", f.Path, humanize.IBytes(uint64(f.Info.Size()))))
	}
	return fmt.Errorf("%s holds %s, more than max_seed_bytes (%s); the largest: %s. Ignore them in .gitignore, seed another --workdir, or pass --no-workdir",
		p.Root, humanize.IBytes(uint64(p.Bytes)), humanize.IBytes(uint64(limit)), strings.Join(big, ", "))
}

// CheckReadable opens every regular file once, so that one the caller
// cannot read fails the seed before anything is sent.
func (p *Plan) CheckReadable() error {
	for _, f := range p.Files {
		if !f.Info.Mode().IsRegular() {
			continue
		}
		fh, err := os.Open(p.source(f))
		if err != nil {
			return fmt.Errorf("seed: cannot read %s: %w", f.Path, err)
		}
		fh.Close()
	}
	return nil
}

// Write writes the plan as a tar stream: owned by root (the guest user),
// modes kept, links as links. .git/config goes without credentials.
func (p *Plan) Write(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, f := range p.Files {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := p.entry(tw, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

// source is where f's content is read from.
func (p *Plan) source(f File) string {
	if f.Src != "" {
		return f.Src
	}
	return filepath.Join(p.Root, filepath.FromSlash(f.Path))
}

func (p *Plan) entry(tw *tar.Writer, f File) error {
	full := p.source(f)
	link := ""
	if f.Info.Mode()&fs.ModeSymlink != 0 {
		l, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("seed %s: %w", f.Path, err)
		}
		link = l
	}
	hdr, err := tar.FileInfoHeader(f.Info, link)
	if err != nil {
		return fmt.Errorf("seed %s: %w", f.Path, err)
	}
	hdr.Name = f.Path
	if f.Info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""

	hdr.Format = tar.FormatPAX
	if f.Src != "" {
		// Made for this seed, now: a fixed time keeps the fingerprint
		// the files'.
		hdr.ModTime = time.Unix(0, 0)
	}
	hdr.AccessTime, hdr.ChangeTime = hdr.ModTime, hdr.ModTime
	if !f.Info.Mode().IsRegular() {
		return tw.WriteHeader(hdr)
	}
	if p.Git && f.Path == ".git/config" {
		b, err := os.ReadFile(full)
		if err != nil {
			return fmt.Errorf("seed %s: %w", f.Path, err)
		}
		clean := SanitizeConfig(b)
		hdr.Size = int64(len(clean))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(clean)
		return err
	}
	fh, err := os.Open(full)
	if err != nil {
		return fmt.Errorf("seed: cannot read %s: %w", f.Path, err)
	}
	defer fh.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(fh, hdr.Size))
	if err != nil {
		return fmt.Errorf("seed %s: %w", f.Path, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("seed %s: the file shrank while it was being read", f.Path)
	}
	return nil
}

var userinfo = regexp.MustCompile(`(?i)^(\s*(?:push)?url\s*=\s*"?[a-z][a-z0-9+.-]*://)[^/@\s"]*@`)

// SanitizeConfig drops credentials from a repository's config: credential
// helper sections, extra HTTP headers (tokens), include directives (whose
// files are not seeded), and user:password@ in remote URLs.
func SanitizeConfig(b []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	skip := false
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			inner := strings.TrimPrefix(t, "[")
			if i := strings.IndexAny(inner, " \t\".]"); i >= 0 {
				inner = inner[:i]
			}
			name := strings.ToLower(inner)
			skip = name == "credential" || name == "include" || name == "includeif"
		}
		if skip {
			continue
		}
		key := strings.ToLower(strings.TrimSpace(strings.SplitN(t, "=", 2)[0]))
		if key == "extraheader" || key == "helper" || key == "sshcommand" {
			continue
		}
		line = userinfo.ReplaceAllString(line, "$1")
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}
