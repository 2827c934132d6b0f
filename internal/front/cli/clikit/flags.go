package clikit

import (
	"fmt"

	"github.com/spf13/cobra"
)

// OutputFlag adds -o/--output to a listing or show command.
func OutputFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVarP(v, "output", "o", "table", "output format: table or json")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

// CheckOutput refuses an --output other than table or json, before the
// command reaches for the daemon.
func CheckOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output %q: want table or json: %w", o, ErrInvalidUsage)
	}
	return nil
}

// SharedFlag adds --shared to a command that makes an image or a kernel
// from the caller's own data.
func SharedFlag(cmd *cobra.Command, shared *bool, kind string) {
	cmd.Flags().BoolVar(shared, "shared", false, "let every user of the daemon see and boot the "+kind+" (default: only you and root)")
}
