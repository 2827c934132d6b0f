package vmcmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/report"
	"github.com/banger-dev/banger/internal/wire/api"
)

func newVMReport(a *app) *cobra.Command {
	var output, since string
	var changes bool
	cmd := &cobra.Command{
		Use:   "report NAME",
		Short: "Show what was done in a VM: commands, files, lookups, connections, secrets, its life",
		Long: `Show a VM's activity record, kept by the daemon on the host (the guest can
neither write nor change it) from its creation until it is removed, across
stops and daemon restarts: the commands run through banger (vm run, exec,
ssh, MCP's sandbox_exec) with who ran them, their exit status, duration
and output size; files banger wrote into the VM or read from it (vm cp,
sandbox_write_file, the seed of /work; lent credentials and secrets by name,
never by value); each name the guest looked up, allowed or refused by its
egress policy; connections through banger's proxy; each use of a secret
and each attempt to send its placeholder elsewhere; and the VM's life
(create, start, stop, snapshot, fork, pull).

The counts come first, then the timeline; -o json has every event. The
record is bounded (activity_events in the daemon's config, 10000 per VM):
past it the oldest events go, and the report says how many.

--changes adds what differs on the VM's root disk from its image, outside
/work: files added, changed and removed. The VM must be stopped; both disks
are read in the daemon's sandbox, as any disk a guest wrote is (seconds for
a small image, longer for a large one). With -o json the report is
{"activity": ..., "changes": ...}.`,
		Example: `  banger vm report web
  banger vm report web --since 30m
  banger vm report web -o json | jq '.events[] | select(.kind == "command")'
  banger vm stop web && banger vm report web --changes`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			rep, err := a.Client().Activity(cmd.Context(), args[0], since)
			if err != nil {
				return err
			}
			var rc *api.RootChanges
			if changes {
				c, err := a.Client().RootChanges(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				rc = &c
			}
			if output == "json" {
				if rc != nil {
					return clikit.PrintJSON(a.Stdout, struct {
						Activity api.ActivityReport `json:"activity"`
						Changes  *api.RootChanges   `json:"changes"`
					}{rep, rc})
				}
				return clikit.PrintJSON(a.Stdout, rep)
			}
			report.Summary(a.Stdout, rep)
			if rc != nil {
				report.Changes(a.Stdout, *rc)
			}
			if len(rep.Events) > 0 {
				fmt.Fprintln(a.Stdout)
				report.Timeline(a.Stdout, rep, time.Local)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&changes, "changes", false, "add what differs on the root disk from the image, outside /work (the VM must be stopped)")
	cmd.Flags().StringVar(&since, "since", "", "only what happened since: a duration back from now (30m, 2h) or an RFC 3339 time")
	clikit.OutputFlag(cmd, &output)
	return cmd
}

// recordActivity reports what this command did in a VM, for its
// activity record. It is no failure of the command's: a VM removed
// meanwhile, or an older daemon without records, is passed over.
func (a *app) recordActivity(ctx context.Context, vm string, ev api.ActivityEvent) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	err := a.Client().RecordActivity(cctx, vm, ev)
	var ce *client.Error
	if err != nil && !(errors.As(err, &ce) && ce.Status == 404) {
		fmt.Fprintf(a.Stderr, "banger: add to vm %s's activity record: %v\n", vm, err)
	}
}
