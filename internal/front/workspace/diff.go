package workspace

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/banger-dev/banger/internal/front/gitwork"
)

// DiffOptions shape what Diff prints.
type DiffOptions struct {
	// Stat leaves out the patch of the uncommitted changes: only their
	// summary.
	Stat bool
	// Color has git color its output, for a terminal.
	Color bool
	// SinceSeed shows only what changed in the VM since the seed: the
	// host's own uncommitted work, seeded with it, is left out.
	SinceSeed bool
}

// Diff prints the work in the VM name's /work since the seed: the commits
// made on top of the seeded HEAD (as git log --stat), then the
// uncommitted changes. It reads /work through the daemon, of a running
// VM or a stopped one, and changes nothing.
func (c *Client) Diff(ctx context.Context, name string, o DiffOptions) error {
	v, err := c.workVM(ctx, name)
	if err != nil {
		return err
	}
	cwd, _ := os.Getwd()
	host, _ := hostRepo(ctx, "", "", cwd, v) // only to reuse its objects
	w, tmp, err := c.fetchWork(ctx, v, "", host)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	color := "--color=never"
	if o.Color {
		color = "--color=always"
	}
	if o.SinceSeed {
		return c.diffSinceSeed(ctx, v.Name, v.Work.SeedCommit, w, color, o.Stat)
	}
	base := v.Work.Base
	if base != "" && !w.HasCommit(ctx, base) {
		fmt.Fprintf(c.log, "banger: the seed's base %.12s is gone from the guest's history (rewritten): showing all of it\n", base)
		base = ""
	}
	if err := c.diffCommits(ctx, w, base, color); err != nil {
		return err
	}
	if err := c.diffUncommitted(ctx, w, color, o.Stat); err != nil {
		return err
	}
	if (w.Head == "" || w.Head == base) && !w.Dirty {
		fmt.Fprintf(c.log, "no changes in vm %s since the seed\n", v.Name)
	}
	return nil
}

// diffSinceSeed prints what changed in the VM since the seed, committed
// or not, against the commit of the working tree the seed carried. That
// commit is named by the daemon's record, not by the guest: a guest that
// changed the ref changes nothing, one that dropped the objects is
// answered so.
func (c *Client) diffSinceSeed(ctx context.Context, vm, seed string, w *gitwork.Work, color string, stat bool) error {
	if seed == "" {
		return fmt.Errorf("vm %s has no record of its seed's working tree (seeded from a plain directory, or by an older banger): --since-seed cannot tell its changes from the host's; use vm diff without it", vm)
	}
	if !w.HasCommit(ctx, seed) {
		return fmt.Errorf("the seed's commit %.12s is gone from vm %s's repository (its objects were removed in the guest): use vm diff without --since-seed", seed, vm)
	}
	fmt.Fprintf(c.out, "# changes in vm %s since the seed (%.12s: the working tree as seeded, the host's uncommitted work included)\n", vm, seed)
	args := []string{"diff", color, "--stat", "--patch", seed, w.Tip}
	if stat {
		args = []string{"diff", color, "--stat", seed, w.Tip}
	}
	var out strings.Builder
	cmd := w.Cmd(ctx, io.MultiWriter(c.out, &out), c.log, args...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git diff: %w", err)
	}
	if out.Len() == 0 {
		fmt.Fprintf(c.log, "no changes in vm %s since the seed\n", vm)
	}
	return nil
}

// diffCommits prints the guest's commits after base (all of them when
// base is "").
func (c *Client) diffCommits(ctx context.Context, w *gitwork.Work, base, color string) error {
	if w.Head == "" || w.Head == base {
		return nil
	}
	rng, since := w.Head, "-"
	if base != "" {
		rng, since = base+".."+w.Head, fmt.Sprintf("%.12s", base)
	}
	fmt.Fprintf(c.out, "# commits since the seed (%s)\n", since)
	if err := w.Cmd(ctx, c.out, c.log, "log", color, "--stat", rng).Run(); err != nil {
		return fmt.Errorf("git log: %w", err)
	}
	return nil
}

// diffUncommitted prints the guest's uncommitted changes, with their
// patch unless stat.
func (c *Client) diffUncommitted(ctx context.Context, w *gitwork.Work, color string, stat bool) error {
	if !w.Dirty {
		return nil
	}
	from := w.Head
	if from == "" {
		from = gitwork.EmptyTree
	}
	fmt.Fprintln(c.out, "# uncommitted changes")
	args := []string{"diff", color, "--stat", "--patch", from, w.Tip}
	if stat {
		args = []string{"diff", color, "--stat", from, w.Tip}
	}
	if err := w.Cmd(ctx, c.out, c.log, args...).Run(); err != nil {
		return fmt.Errorf("git diff: %w", err)
	}
	return nil
}
