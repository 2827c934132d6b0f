package vmcmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// NewTemplate builds 'banger template'.
func NewTemplate(ca *clikit.App) *cobra.Command {
	a := &app{ca}
	cmd := &cobra.Command{
		Use:     "template",
		Aliases: []string{"templates"},
		Short:   "See and drop the saved guests VMs resume from instead of booting",
		Long: `The first start of a VM of a kind (image, kernel, CPUs, memory, disk size)
boots a template guest, saves it once its agent is ready (its memory in a
file, its device state, its root disk) and resumes the VM from it; every
later VM of that kind resumes from it too, in well under a second instead
of a boot, and is then given its own hostname, SSH keys and host key,
machine ID, entropy, clock and work disk before anything else reaches it.

A template made with another guest agent, VMM build, accelerator, image
or kernel content is made again at the next start of its kind; so is one
whose files are gone. Removing one harms no VM (each keeps its own link to
the template's disk), and image rm and kernel rm remove theirs.
Set templates = false in the daemon's config to boot every VM.`,
		GroupID: "objects",
	}
	cmd.AddCommand(newTemplateLs(a), newTemplateRm(a))
	return cmd
}

func (a *app) completeTemplates(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return clikit.Complete(cmd, args, false, a.Client().Templates, func(t api.Template) string { return t.ID + "\t" + t.Image })
}

func newTemplateLs(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List templates, their size on disk and the VMs resumed from them",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			ts, err := a.Client().Templates(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, ts)
			}
			t := clikit.NewTable(a.Stdout, "ID", "IMAGE", "KERNEL", "CPUS", "MEMORY", "SIZE", "BOOT SAVED", "VMS", "CREATED")
			for _, tp := range ts {
				if tp.Problem != "" && tp.Image == "" {
					t.Row(tp.ID, "-", "-", "-", "-", "-", "-", "-", tp.Problem)
					continue
				}
				used := clikit.OrDash(strings.Join(tp.UsedBy, ","))
				created := clikit.Ago(tp.CreatedAt)
				if tp.Problem != "" {
					created += " (" + tp.Problem + ")"
				}
				t.Row(tp.ID, tp.Image, tp.Kernel, fmt.Sprint(tp.CPUs), fmt.Sprintf("%d MiB", tp.MemoryMB), clikit.HumanSize(tp.Bytes),
					(time.Duration(tp.BootMillis) * time.Millisecond).String(), used, created)
			}
			t.Flush()
			if len(ts) == 0 {
				fmt.Fprintln(a.Stderr, "no templates yet: the first `banger vm run` of a kind makes one")
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newTemplateRm(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "rm ID...",
		Aliases:           []string{"remove"},
		Short:             "Remove templates (VMs resumed from them are not harmed)",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeTemplates,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.RemoveEach(args, "template", func(id string) error { return a.Client().RemoveTemplate(cmd.Context(), id) })
		},
	}
}
