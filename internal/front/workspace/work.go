package workspace

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/front/gitwork"
	"github.com/banger-dev/banger/internal/kit/scratch"
	"github.com/banger-dev/banger/internal/wire/api"
)

// workVM returns the VM, refusing one without a work disk.
func (c *Client) workVM(ctx context.Context, name string) (api.VM, error) {
	v, err := c.daemon.VM(ctx, name)
	if err == nil && v.Work == nil {
		err = fmt.Errorf("vm %s has no work disk: it was created outside a git checkout, or with --no-workdir", name)
	}
	return v, err
}

// fetchWork brings a VM's /work into a private temporary directory and
// opens it for git. The caller removes the directory it returns.
//
// host is the host repository, "" when unknown: the objects it has are
// taken from it rather than written again.
func (c *Client) fetchWork(ctx context.Context, v api.VM, identity, host string) (w *gitwork.Work, tmp string, err error) {
	scratchDir, err := os.MkdirTemp(scratch.Dir(v.Work.DiskBytes, os.TempDir()), "banger-work-") // memory when the whole disk fits
	if err != nil {
		return nil, "", err
	}
	// Not tmp: a failed return sets the named result to "" before this
	// runs, which left the directory behind.
	defer func() {
		if err != nil {
			os.RemoveAll(scratchDir)
		}
	}()
	tmp = scratchDir
	rc, err := c.daemon.ExportWork(ctx, v.Name)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	dir := filepath.Join(tmp, "work")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, "", err
	}
	known := ""
	if host != "" {
		known, _ = gitwork.HostObjects(ctx, host)
	}
	if err := gitwork.Unpack(rc, dir, v.Work.DiskBytes, known); err != nil {
		return nil, "", fmt.Errorf("read /work of vm %s: %w", v.Name, err)
	}
	w, err = gitwork.Open(ctx, dir, v.Name, identity, known)
	if err != nil {
		return nil, "", err
	}
	return w, tmp, nil
}

// hostRepo is the host repository a VM's work goes back to: the top of
// the first of hostCandidates that is in a git checkout.
func hostRepo(ctx context.Context, repo, home, cwd string, v api.VM) (string, error) {
	for _, d := range hostCandidates(repo, home, cwd, v.Work.Source) {
		if top, err := gitwork.HostGit(ctx, d, "rev-parse", "--show-toplevel"); err == nil {
			return strings.TrimSpace(top), nil
		}
	}
	if repo != "" {
		return "", fmt.Errorf("--repo %s is not a git checkout", repo)
	}
	return "", fmt.Errorf("not in a git checkout, and the VM's seed source is not one either: run from your checkout, or pass --repo")
}

// hostCandidates are the directories that may hold the host repository,
// in the order tried: repo (--repo) alone when given; else cwd, where the
// command runs, then source, where the VM's seed came from. With home
// (banger mcp's checkout; it may reach VMs of other checkouts) the seed
// source comes first, then home.
func hostCandidates(repo, home, cwd, source string) []string {
	dirs := []string{repo}
	switch {
	case home != "":
		dirs = []string{source, home}
	case repo == "":
		dirs = []string{cwd, source}
	}
	var out []string
	for _, d := range dirs {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}
