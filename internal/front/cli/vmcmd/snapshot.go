package vmcmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// seedUnlessFork is the work seed of a create, none for a fork: a fork's
// work disk is its snapshot's.
func (a *app) seedUnlessFork(ctx context.Context, req api.VMCreateRequest, f seedFlags) (string, error) {
	if req.Snapshot != "" {
		if f.workdir != "" {
			return "", fmt.Errorf("--workdir and --from-snapshot contradict each other: a fork's /work is its snapshot's: %w", clikit.ErrInvalidUsage)
		}
		return "", nil
	}
	return a.seed(ctx, f)
}

func newVMSnapshot(a *app) *cobra.Command {
	var output string
	var withLent bool
	cmd := &cobra.Command{
		Use:   "snapshot VM [NAME]",
		Short: "Save a running VM whole (memory, processes, disks) to fork new VMs from",
		Long: `Save a running VM whole: it is paused (for well under a second) while its
memory, its disks (copied, or reflinked where the file system shares
blocks) and device state are saved, and runs on afterwards, unchanged. NAME defaults to VM-DATE-TIME.

Start new VMs from it with 'banger vm run --from-snapshot NAME': each
resumes where the VM was (its running processes, /tmp, /work), with a
hostname, SSH host key, machine ID, entropy and clock of its own.
'banger vm fork' does both at once. A snapshot keeps its own link to the
image's disk; forks keep their own links to the snapshot's.

A VM that was lent credentials (banger vm lend, [auth_sync]) holds them in
its memory: its snapshot would write them to the host's disk, and every
fork would wake with them. Such a VM is refused unless --with-lent says
to take them; the snapshot then lists what it holds (LENT in
'banger vm snapshot ls'). Restart the VM to drop what it was lent.`,
		Example: `  banger vm snapshot web warm-web
  banger vm run --from-snapshot warm-web -- pgrep -a node
  banger vm snapshot ls`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			req := api.SnapshotRequest{WithLent: withLent}
			if len(args) == 2 {
				req.Name = args[1]
			}
			p := a.Progress()
			sn, err := a.Client().SnapshotVM(cmd.Context(), args[0], req, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, sn)
			}
			fmt.Fprintf(a.Stdout, "snapshot %s of vm %s (%s; the VM was paused %s): fork it with `banger vm run --from-snapshot %s`\n",
				sn.Name, sn.VM, clikit.HumanSize(sn.Bytes), time.Duration(sn.PausedMillis)*time.Millisecond, sn.Name)
			warnLent(a.Stderr, "snapshot "+sn.Name, sn.Lent)
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	cmd.Flags().BoolVar(&withLent, "with-lent", false, "take a VM that holds lent credentials: the snapshot's memory file holds them too")
	cmd.AddCommand(newVMSnapshotLs(a), newVMSnapshotRm(a))
	return cmd
}

func (a *app) completeSnapshots(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return clikit.Complete(cmd, args, false, a.Client().Snapshots, func(s api.Snapshot) string { return s.Name + "\tof " + s.VM })
}

func newVMSnapshotLs(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List snapshots",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			ss, err := a.Client().Snapshots(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, ss)
			}
			owners := clikit.SeesOwners()
			t := clikit.NewTable(a.Stdout, clikit.OwnerCol(owners, "OWNER", "NAME", "VM", "IMAGE", "CPUS", "MEMORY", "SIZE", "PAUSED", "FORKS", "LENT", "CREATED")...)
			for _, s := range ss {
				created := clikit.Ago(s.CreatedAt)
				if s.Problem != "" {
					created += " (" + s.Problem + ")"
				}
				t.Row(clikit.OwnerCol(owners, clikit.OwnerName(s.Owner), s.Name, clikit.OrDash(s.VM), clikit.OrDash(s.Image), fmt.Sprint(s.CPUs), fmt.Sprintf("%d MiB", s.MemoryMB), clikit.HumanSize(s.Bytes),
					(time.Duration(s.PausedMillis) * time.Millisecond).String(), clikit.OrDash(strings.Join(s.UsedBy, ",")), clikit.OrDash(strings.Join(s.Lent, ",")), created)...)
			}
			t.Flush()
			if len(ss) == 0 {
				fmt.Fprintln(a.Stderr, "no snapshots yet: `banger vm snapshot VM` saves a running one")
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newVMSnapshotRm(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "rm NAME...",
		Aliases:           []string{"remove"},
		Short:             "Remove snapshots (VMs forked from them are not harmed)",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.RemoveEach(args, "snapshot", func(n string) error { return a.Client().RemoveSnapshot(cmd.Context(), n) })
		},
	}
}

func newVMFork(a *app) *cobra.Command {
	var output string
	var withLent bool
	cmd := &cobra.Command{
		Use:   "fork VM [NEW]",
		Short: "Make a new VM from a running one, as it is now",
		Long: `Make a new VM from a running one: a snapshot taken while the VM runs on
(paused only for the copy of its memory, disks and device state), which the new VM
resumes from: its running processes, /tmp and /work as they were, with a
hostname, SSH host key, machine ID, entropy and clock of its own. The
original keeps running unchanged; each can be removed on its own. NEW is
generated when not given. A VM that holds lent credentials is forked only
with --with-lent: the fork wakes with them in its memory.`,
		Example: `  banger vm fork web web-try
  banger vm exec web-try -- pgrep -a node`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			_, key, err := clikit.UserKey()
			if err != nil {
				return err
			}
			req := api.ForkRequest{Keys: []string{key}, WithLent: withLent}
			if len(args) == 2 {
				req.Name = args[1]
			}
			p := a.Progress()
			v, err := a.Client().ForkVM(cmd.Context(), args[0], req, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, v)
			}
			fmt.Fprintf(a.Stdout, "forked vm %s from %s: `banger vm ssh %s`\n", v.Name, args[0], v.Name)
			warnLent(a.Stderr, "vm "+v.Name, v.Lent)
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	cmd.Flags().BoolVar(&withLent, "with-lent", false, "fork a VM that holds lent credentials: the fork holds them too")
	return cmd
}

// warnLent says that what was made holds lent credentials.
func warnLent(w io.Writer, what string, lent []string) {
	if len(lent) > 0 {
		fmt.Fprintf(w, "warning: %s holds lent credentials in its memory (%s): they are on this host's disk until it is removed\n", what, strings.Join(lent, ", "))
	}
}
