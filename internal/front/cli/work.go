package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/gitwork"
	"github.com/banger-dev/banger/internal/front/mcpserver"
	"github.com/banger-dev/banger/internal/front/seed"
	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/kit/scratch"
	"github.com/banger-dev/banger/internal/wire/api"
)

// seedFlags choose what `vm run` and `vm create` seed into /work.
type seedFlags struct {
	workdir   string
	noWorkdir bool
	workDisk  string
}

func (f *seedFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.workdir, "workdir", "", "seed this directory into /work (default: the git checkout you are in, when config workdir = \"auto\")")
	fl.BoolVar(&f.noWorkdir, "no-workdir", false, "seed nothing: the VM gets no /work")
	fl.StringVar(&f.workDisk, "work-disk", "", "size of the work disk, such as 4G (default: default_disk; it grows to hold the seed with room to work)")
}

// seed uploads the work seed these flags ask for and returns its ID, ""
// when there is nothing to seed.
func (a *app) seed(ctx context.Context, f seedFlags) (string, error) {
	if f.noWorkdir {
		if f.workdir != "" {
			return "", fmt.Errorf("--workdir and --no-workdir contradict each other: %w", errInvalidUsage)
		}
		return "", nil
	}
	dir := f.workdir
	if dir == "" {
		cfg, _, err := userconfig.Load()
		if err != nil {
			return "", err
		}
		cwd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		// Only a checkout is seeded unasked: a VM started from $HOME must
		// not try to carry it along.
		if cfg.Workdir == "off" || !seed.InCheckout(ctx, cwd) {
			return "", nil
		}
		dir = cwd
	}
	plan, err := seed.Find(ctx, dir)
	if err != nil {
		return "", err
	}
	c := a.client()
	st, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	if err := plan.CheckSize(st.MaxSeedBytes); err != nil {
		return "", err
	}
	if err := plan.CheckReadable(); err != nil {
		return "", err
	}
	what := "directory"
	if plan.Git {
		what = "checkout"
		if plan.Base != "" {
			what += fmt.Sprintf(" at %.12s", plan.Base)
		}
		if plan.Branch != "" {
			what += " (" + plan.Branch + ")"
		}
	}
	p := a.progress()
	defer p.done()
	p.event(api.Event{Stage: "seed", Message: fmt.Sprintf("seeding %s %s into /work: %d entries, %s", what, plan.Root, plan.Count(), humanSize(plan.Bytes))})
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(client.BodyError(plan.Write(ctx, pw))) }()
	var s api.Seed
	err = sendCounted(p, "seed", plan.Bytes, pr, func(body io.Reader) error {
		var err error
		s, err = c.StageSeed(ctx, api.Work{Source: plan.Root, Base: plan.Base, Branch: plan.Branch}, f.workDisk, body)
		return err
	})
	pr.CloseWithError(errors.New("seed upload ended"))
	if err != nil {
		return "", fmt.Errorf("seed %s: %w", plan.Root, err)
	}
	return s.ID, nil
}

// sendCounted runs send with body, reporting the bytes it has read as
// progress of stage every 200 ms (capped at total, which is what the user
// knows: a tar stream carries headers too).
func sendCounted(p *progress, stage string, total int64, body io.Reader, send func(io.Reader) error) error {
	var sent atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.event(api.Event{Stage: stage, Done: min(sent.Load(), total), Total: total})
			}
		}
	}()
	err := send(&countReader{r: body, n: &sent})
	close(stop)
	<-done
	return err
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// lend sends the credentials the user's config allows to a running VM;
// quiet when nothing is configured.
func (a *app) lend(ctx context.Context, name string, always bool) error {
	cfg, path, err := userconfig.Load()
	if err != nil {
		return err
	}
	if cfg.AuthSync.Empty() {
		if always {
			return fmt.Errorf("nothing to lend: list files and variables under [auth_sync] in %s (files = [\"~/.gitconfig\"], env = [\"GH_TOKEN\"])", path)
		}
		return nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	var req api.AuthSync
	for _, f := range cfg.AuthSync.Files {
		rel, _ := userconfig.HomeRelative(f)
		// Read with the caller's own rights, from the caller's home.
		b, err := os.ReadFile(filepath.Join(home, rel))
		if err != nil {
			fmt.Fprintf(a.stderr, "banger: not lending ~/%s: %v\n", rel, err)
			continue
		}
		req.Files = append(req.Files, api.LentFile{Path: rel, Data: b})
	}
	for _, e := range cfg.AuthSync.Env {
		if v, ok := os.LookupEnv(e); ok {
			if req.Env == nil {
				req.Env = map[string]string{}
			}
			req.Env[e] = v
		}
	}
	if len(req.Files) == 0 && len(req.Env) == 0 {
		return nil
	}
	v, err := a.client().AuthSync(ctx, name, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "==> lent vm %s: %s (in memory in the guest, gone when it stops)\n", name, strings.Join(v.Lent, ", "))
	return nil
}

func newVMAuthSync(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "authsync NAME",
		Short: "Lend a running VM the credentials your config allows, again",
		Long: `Send the files and environment variables listed under [auth_sync] in your
config (~/.config/banger/config.toml, or $BANGER_CONFIG) to a running VM.

Files land at the same path under the guest user's home, on a tmpfs, mode
0600: they never reach the VM's disks, an image made from it, or a 'vm
pull'. Variables are set in every session started afterwards. 'vm run'
and 'vm start' lend them already; use this after changing a token.

  [auth_sync]
  files = ["~/.gitconfig", "~/.config/gh/hosts.yml"]
  env = ["GH_TOKEN"]`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.lend(cmd.Context(), args[0], true)
		},
	}
}

// workVM returns the VM, refusing one without a work disk.
func (a *app) workVM(ctx context.Context, name string) (api.VM, error) {
	v, err := a.client().VM(ctx, name)
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
func (a *app) fetchWork(ctx context.Context, v api.VM, identity, host string) (w *gitwork.Work, tmp string, err error) {
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
	rc, err := a.client().ExportWork(ctx, v.Name)
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

func newVMDiff(a *app) *cobra.Command {
	var stat bool
	cmd := &cobra.Command{
		Use:   "diff NAME",
		Short: "Show what changed in a VM's /work since it was seeded",
		Long: `Show the work done in a VM's /work since the seed: the commits made on top
of the seeded HEAD (as 'git log --stat'), then the uncommitted changes,
staged or not, new files included (as 'git diff --stat' and the patch).

It works on a running VM and on a stopped one, whose work disk is read
without booting it; nothing of the VM changes. Uncommitted changes are
relative to the guest's HEAD, so what was uncommitted on the host when it
was seeded shows too.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.diff(cmd.Context(), args[0], stat)
		},
	}
	cmd.Flags().BoolVar(&stat, "stat", false, "only the summary of uncommitted changes, no patch")
	return cmd
}

// diff prints the work in a VM's /work since the seed: its commits, then
// its uncommitted changes (with the patch unless stat).
func (a *app) diff(ctx context.Context, name string, stat bool) error {
	v, err := a.workVM(ctx, name)
	if err != nil {
		return err
	}
	host, _ := hostRepo(ctx, "", "", v) // only to reuse its objects
	w, tmp, err := a.fetchWork(ctx, v, "", host)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	color := "--color=never"
	if f, ok := a.stdout.(*os.File); ok && isTerminal(f) {
		color = "--color=always"
	}
	base := v.Work.Base
	if base != "" && !w.HasCommit(ctx, base) {
		fmt.Fprintf(a.stderr, "banger: the seed's base %.12s is gone from the guest's history (rewritten): showing all of it\n", base)
		base = ""
	}
	if w.Head != "" && w.Head != base {
		rng := w.Head
		if base != "" {
			rng = base + ".." + w.Head
		}
		fmt.Fprintf(a.stdout, "# commits since the seed (%s)\n", orDash(shortID(base)))
		if err := w.Cmd(ctx, a.stdout, a.stderr, "log", color, "--stat", rng).Run(); err != nil {
			return fmt.Errorf("git log: %w", err)
		}
	}
	if w.Dirty {
		from := w.Head
		if from == "" {
			from = gitwork.EmptyTree
		}
		fmt.Fprintln(a.stdout, "# uncommitted changes")
		dargs := []string{"diff", color, "--stat", from, w.Tip}
		if !stat {
			dargs = []string{"diff", color, "--stat", "--patch", from, w.Tip}
		}
		if err := w.Cmd(ctx, a.stdout, a.stderr, dargs...).Run(); err != nil {
			return fmt.Errorf("git diff: %w", err)
		}
	}
	if (w.Head == "" || w.Head == base) && !w.Dirty {
		fmt.Fprintf(a.stderr, "no changes in vm %s since the seed\n", v.Name)
	}
	return nil
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func newVMPull(a *app) *cobra.Command {
	var branch, repo string
	var force, apply bool
	cmd := &cobra.Command{
		Use:   "pull NAME",
		Short: "Bring a VM's work back into your repository as a branch",
		Long: `Bring the work in a VM's /work into the host repository as the branch
banger/NAME: the guest's commits as they are, and its uncommitted changes
(staged or not, new files included) as one last commit on top.

Your working tree, index and uncommitted work are not touched (unless
--apply); only the branch is written. It works on a running VM and on a
stopped one, whose disk is read without booting it. An existing branch is
refused unless --force.

The guest is not trusted: its repository is read as data, without its
config, hooks or attributes running anything on the host.`,
		Example: `  banger vm pull swift-otter                 # branch banger/swift-otter
  git log --stat main..banger/swift-otter     # review it
  banger vm pull swift-otter --force --apply  # replace it, fast-forward a clean checkout to it`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.pull(cmd.Context(), args[0], pullOptions{branch: branch, repo: repo, force: force, apply: apply})
			return err
		},
	}
	cmd.Flags().StringVar(&branch, "branch", "", "branch to write (default banger/NAME)")
	cmd.Flags().StringVar(&repo, "repo", "", "host repository (default: the checkout you are in, else the one the VM was seeded from)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace the branch if it exists")
	cmd.Flags().BoolVar(&apply, "apply", false, "then fast-forward your clean checkout to the branch")
	return cmd
}

// pullOptions are vm pull's flags; home is banger mcp's checkout (see
// hostRepo).
type pullOptions struct {
	branch, repo, home string
	force, apply       bool
}

// pull writes a VM's work to a branch of the host repository and prints
// what it made.
func (a *app) pull(ctx context.Context, name string, o pullOptions) (res mcpserver.PullResult, err error) {
	branch, repo, force, apply := o.branch, o.repo, o.force, o.apply
	if branch == "" {
		branch = "banger/" + name
	}
	v, err := a.workVM(ctx, name)
	if err != nil {
		return res, err
	}
	host, err := hostRepo(ctx, repo, o.home, v)
	if err != nil {
		return res, err
	}
	identity := ""
	if n, err := gitwork.HostGit(ctx, host, "config", "user.name"); err == nil {
		e, _ := gitwork.HostGit(ctx, host, "config", "user.email")
		identity = strings.TrimSpace(n) + " <" + strings.TrimSpace(e) + ">"
	}
	if apply {
		if out, err := gitwork.HostGit(ctx, host, "status", "--porcelain"); err != nil || strings.TrimSpace(out) != "" {
			return res, fmt.Errorf("--apply needs a clean working tree in %s: commit or stash your changes first (nothing was pulled)", host)
		}
	}
	w, tmp, err := a.fetchWork(ctx, v, identity, host)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	if err := w.Pull(ctx, host, branch, force); err != nil {
		return res, err
	}
	base := v.Work.Base
	rewritten := base != "" && !(w.HasCommit(ctx, base) && w.IsAncestor(ctx, base, w.Tip))
	commits, _ := w.Commits(ctx, map[bool]string{true: "", false: base}[rewritten], w.Tip)
	res = mcpserver.PullResult{Branch: branch, Commit: w.Tip, Commits: commits}
	if res.Commits == nil {
		res.Commits = []string{}
	}
	fmt.Fprintf(a.stdout, "vm %s -> branch %s (%.12s)", name, branch, w.Tip)
	switch {
	case len(commits) == 0:
		fmt.Fprintf(a.stdout, ": no changes since the seed\n")
	case w.Dirty:
		fmt.Fprintf(a.stdout, ": %d commits, the last one the uncommitted changes\n", len(commits))
	default:
		fmt.Fprintf(a.stdout, ": %d commits\n", len(commits))
	}
	for i, c := range commits {
		if i == 20 {
			fmt.Fprintf(a.stdout, "  ... %d more\n", len(commits)-20)
			break
		}
		fmt.Fprintf(a.stdout, "  %s\n", c)
	}
	if rewritten {
		fmt.Fprintf(a.stderr, "banger: note: the guest rewrote history below the seed's base %.12s: the branch holds its history as it is now; compare before merging\n", base)
	}
	if _, err := a.client().WorkPulled(ctx, name, api.WorkPulled{Branch: branch, Commit: w.Tip}); err != nil {
		fmt.Fprintf(a.stderr, "banger: record the pull: %v\n", err)
	}
	if apply {
		if _, err := gitwork.HostGit(ctx, host, "merge", "--ff-only", "--quiet", branch); err != nil {
			return res, fmt.Errorf("--apply: your HEAD moved since the seed, so %s does not fast-forward it: merge it yourself (`git merge %s`): %w", branch, branch, err)
		}
		fmt.Fprintf(a.stdout, "fast-forwarded your checkout to %s\n", branch)
	}
	return res, nil
}

// hostRepo is the repository vm pull writes to: --repo, else the checkout
// the command runs in, else the VM's seed source. With home (banger mcp,
// which may reach VMs of other checkouts), the seed source comes first,
// then home.
func hostRepo(ctx context.Context, repo, home string, v api.VM) (string, error) {
	dirs := []string{repo}
	switch {
	case home != "":
		dirs = []string{v.Work.Source, home}
	case repo == "":
		cwd, _ := os.Getwd()
		dirs = []string{cwd, v.Work.Source}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if top, err := gitwork.HostGit(ctx, d, "rev-parse", "--show-toplevel"); err == nil {
			return strings.TrimSpace(top), nil
		}
	}
	if repo != "" {
		return "", fmt.Errorf("--repo %s is not a git checkout", repo)
	}
	return "", fmt.Errorf("not in a git checkout, and the VM's seed source is not one either: run from your checkout, or pass --repo")
}
