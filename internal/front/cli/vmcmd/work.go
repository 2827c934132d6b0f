package vmcmd

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/front/workspace"
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
			return "", fmt.Errorf("--workdir and --no-workdir contradict each other: %w", clikit.ErrInvalidUsage)
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
		if dir = workspace.SeedDir(ctx, cfg.Workdir, cwd); dir == "" {
			return "", nil
		}
	}
	p := a.Progress()
	defer p.Done()
	return a.workspace().Seed(ctx, dir, f.workDisk, p.Event)
}

// workspace does the workspace's verbs for this command, printing as the
// command does.
func (a *app) workspace() *workspace.Client {
	return workspace.New(a.Client(), a.Stdout, a.Stderr)
}

// lend sends the credentials the user's config allows to a running VM;
// quiet when nothing is configured.
func (a *app) lend(ctx context.Context, name string) error {
	cfg, _, err := userconfig.Load()
	if err != nil {
		return err
	}
	return a.workspace().Lend(ctx, name, cfg.AuthSync)
}

// secretFlag is --secret, on the commands that boot a VM.
func secretFlag(cmd *cobra.Command, names *[]string) {
	cmd.Flags().StringArrayVar(names, "secret", nil, "give the VM secret NAME from your config's [secrets.NAME] (repeatable): a placeholder in the guest, the value added by the host for its hosts only (see 'banger vm run --help')")
}

// secretGrants reads the named secrets' values from the user's config,
// with the user's rights.
func (a *app) secretGrants(ctx context.Context, names []string) ([]api.SecretGrant, error) {
	if len(names) == 0 {
		return nil, nil
	}
	cfg, _, err := userconfig.Load()
	if err != nil {
		return nil, err
	}
	return cfg.Grants(ctx, names)
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
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, path, err := userconfig.Load()
			if err != nil {
				return err
			}
			if cfg.AuthSync.Empty() {
				return fmt.Errorf("nothing to lend: list files and variables under [auth_sync] in %s (files = [\"~/.gitconfig\"], env = [\"GH_TOKEN\"])", path)
			}
			return a.workspace().Lend(cmd.Context(), args[0], cfg.AuthSync)
		},
	}
}

func newVMDiff(a *app) *cobra.Command {
	var stat, sinceSeed bool
	cmd := &cobra.Command{
		Use:   "diff NAME",
		Short: "Show what changed in a VM's /work since it was seeded",
		Long: `Show the work done in a VM's /work since the seed: the commits made on top
of the seeded HEAD (as 'git log --stat'), then the uncommitted changes,
staged or not, new files included (as 'git diff --stat' and the patch).

It works on a running VM and on a stopped one, whose work disk is read
without booting it; nothing of the VM changes. Uncommitted changes are
relative to the guest's HEAD, so what was uncommitted on the host when it
was seeded shows too.

--since-seed shows only what changed in the VM after it was seeded,
committed or not, as one diff: the seed carried a commit of the working
tree as it was (the host's uncommitted work included, refs/banger/seed in
the guest), and the diff is against it. The daemon's record names that
commit, so a guest that moves the ref changes nothing.`,
		Example: `  banger vm diff web
  banger vm diff web --stat
  banger vm diff web --since-seed     # the agent's changes, not your own uncommitted ones`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.workspace().Diff(cmd.Context(), args[0], workspace.DiffOptions{Stat: stat, Color: a.stdoutIsTerminal(), SinceSeed: sinceSeed})
		},
	}
	cmd.Flags().BoolVar(&stat, "stat", false, "only the summary of uncommitted changes, no patch")
	cmd.Flags().BoolVar(&sinceSeed, "since-seed", false, "only what changed in the VM since it was seeded, against the working tree as seeded (your own uncommitted work left out)")
	return cmd
}

// stdoutIsTerminal says whether the command prints to a terminal.
func (a *app) stdoutIsTerminal() bool {
	f, ok := a.Stdout.(*os.File)
	return ok && isTerminal(f)
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
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.workspace().Pull(cmd.Context(), args[0], workspace.PullOptions{Branch: branch, Repo: repo, Force: force, Apply: apply})
			return err
		},
	}
	cmd.Flags().StringVar(&branch, "branch", "", "branch to write (default banger/NAME)")
	cmd.Flags().StringVar(&repo, "repo", "", "host repository (default: the checkout you are in, else the one the VM was seeded from)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace the branch if it exists")
	cmd.Flags().BoolVar(&apply, "apply", false, "then fast-forward your clean checkout to the branch")
	return cmd
}
