package workspace

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/front/gitwork"
	activityreport "github.com/banger-dev/banger/internal/front/report"
	"github.com/banger-dev/banger/internal/wire/api"
)

// PullOptions say where Pull writes.
type PullOptions struct {
	// Branch is the branch to write; "" for banger/NAME.
	Branch string
	// Repo is the host repository (vm pull --repo); "" for the checkout
	// the caller runs in, else the one the VM was seeded from.
	Repo string
	// Home is the checkout banger mcp acts for, "" elsewhere: it may
	// reach VMs of other checkouts, so their seed source comes first,
	// then Home.
	Home string
	// Force replaces the branch if it exists.
	Force bool
	// Apply then fast-forwards the host's checkout, which must be clean,
	// to the branch.
	Apply bool
}

// Pulled is what a pull made.
type Pulled struct {
	Branch string
	// Commit is the commit the branch points at.
	Commit string
	// Commits are the commits since the seed, newest first, one line
	// each; never nil.
	Commits []string
}

// Pull writes the work in the VM name's /work to a branch of the host
// repository: the guest's commits as they are, its uncommitted changes as
// one last commit on top. It prints what it made. The guest's repository
// is read as data: nothing of it runs on the host.
func (c *Client) Pull(ctx context.Context, name string, o PullOptions) (Pulled, error) {
	branch := o.Branch
	if branch == "" {
		branch = "banger/" + name
	}
	v, err := c.workVM(ctx, name)
	if err != nil {
		return Pulled{}, err
	}
	cwd, _ := os.Getwd()
	host, err := hostRepo(ctx, o.Repo, o.Home, cwd, v)
	if err != nil {
		return Pulled{}, err
	}
	identity := hostIdentity(ctx, host)
	if o.Apply {
		if out, err := gitwork.HostGit(ctx, host, "status", "--porcelain"); err != nil || strings.TrimSpace(out) != "" {
			return Pulled{}, fmt.Errorf("--apply needs a clean working tree in %s: commit or stash your changes first (nothing was pulled)", host)
		}
	}
	w, tmp, err := c.fetchWork(ctx, v, identity, host)
	if err != nil {
		return Pulled{}, err
	}
	defer os.RemoveAll(tmp)
	if err := w.Pull(ctx, host, branch, o.Force); err != nil {
		return Pulled{}, err
	}
	res := c.pulled(ctx, v, w, branch)
	if _, err := c.daemon.WorkPulled(ctx, name, api.WorkPulled{Branch: branch, Commit: w.Tip}); err != nil {
		fmt.Fprintf(c.log, "banger: record the pull: %v\n", err)
	}
	if err := c.noteActivity(ctx, host, name, identity, w.Tip); err != nil {
		fmt.Fprintf(c.log, "banger: add the activity record as a git note: %v\n", err)
	}
	if o.Apply {
		if _, err := gitwork.HostGit(ctx, host, "merge", "--ff-only", "--quiet", branch); err != nil {
			return res, fmt.Errorf("--apply: your HEAD moved since the seed, so %s does not fast-forward it: merge it yourself (`git merge %s`): %w", branch, branch, err)
		}
		fmt.Fprintf(c.out, "fast-forwarded your checkout to %s\n", branch)
	}
	return res, nil
}

// noteLines bounds the timeline in a pull's git note: the whole record
// is `banger vm report NAME -o json` away.
const noteLines = 200

// noteActivity adds the VM's activity record, summarised, as a git note
// (refs/notes/banger) on the pulled branch's last commit, so that whoever
// reviews the branch sees how it was made: `git log --notes=banger`.
func (c *Client) noteActivity(ctx context.Context, host, name, identity, commit string) error {
	rep, err := c.daemon.Activity(ctx, name, "")
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "banger: how this work was made, in vm %s\n\n", name)
	activityreport.Summary(&b, rep)
	b.WriteString("\n")
	shown := rep
	if len(shown.Events) > noteLines {
		shown.Events = shown.Events[len(shown.Events)-noteLines:]
		fmt.Fprintf(&b, "(the last %d of %d events)\n", noteLines, len(rep.Events))
	}
	activityreport.Timeline(&b, shown, time.UTC)
	fmt.Fprintf(&b, "\nEvery event: banger vm report %s -o json (until the VM is removed)\n", name)
	args := []string{"notes", "--ref", "banger", "add", "-f", "-F", "-", commit}
	if identity == "" {
		// git notes commits: a repository without a user still gets one.
		args = append([]string{"-c", "user.name=banger", "-c", "user.email=banger@localhost"}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", host}, args...)...)
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git notes: %v: %s", err, strings.TrimSpace(string(out)))
	}
	fmt.Fprintf(c.out, "noted vm %s's activity on %.12s (git log --notes=banger %s)\n", name, commit, commit[:min(12, len(commit))])
	return nil
}

// hostIdentity is the host repository's user, "Name <email>", for the
// commit of uncommitted changes; "" when it has none.
func hostIdentity(ctx context.Context, host string) string {
	n, err := gitwork.HostGit(ctx, host, "config", "user.name")
	if err != nil {
		return ""
	}
	e, _ := gitwork.HostGit(ctx, host, "config", "user.email")
	return strings.TrimSpace(n) + " <" + strings.TrimSpace(e) + ">"
}

// pulled lists what the branch now holds since the seed and prints it.
func (c *Client) pulled(ctx context.Context, v api.VM, w *gitwork.Work, branch string) Pulled {
	base := v.Work.Base
	rewritten := base != "" && !(w.HasCommit(ctx, base) && w.IsAncestor(ctx, base, w.Tip))
	since := base
	if rewritten {
		// The base is not below the tip: "since the seed" has no
		// meaning, so the whole history is listed.
		since = ""
	}
	commits, _ := w.Commits(ctx, since, w.Tip)
	res := Pulled{Branch: branch, Commit: w.Tip, Commits: commits}
	if res.Commits == nil {
		res.Commits = []string{}
	}
	report(c.out, v.Name, res, w.Dirty)
	if rewritten {
		fmt.Fprintf(c.log, "banger: note: the guest rewrote history below the seed's base %.12s: the branch holds its history as it is now; compare before merging\n", base)
	}
	return res
}

// maxListed bounds the commits a pull's report lists.
const maxListed = 20

// report prints what a pull of vm made: the branch, how many commits
// (dirty: the last one holds the uncommitted changes), and the first
// maxListed of them.
func report(w io.Writer, vm string, p Pulled, dirty bool) {
	fmt.Fprintf(w, "vm %s -> branch %s (%.12s)", vm, p.Branch, p.Commit)
	switch {
	case len(p.Commits) == 0:
		fmt.Fprintf(w, ": no changes since the seed\n")
	case dirty:
		fmt.Fprintf(w, ": %d commits, the last one the uncommitted changes\n", len(p.Commits))
	default:
		fmt.Fprintf(w, ": %d commits\n", len(p.Commits))
	}
	for i, c := range p.Commits {
		if i == maxListed {
			fmt.Fprintf(w, "  ... %d more\n", len(p.Commits)-maxListed)
			break
		}
		fmt.Fprintf(w, "  %s\n", c)
	}
}
