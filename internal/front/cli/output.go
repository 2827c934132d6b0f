package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

// complete offers names from a daemon listing, each with a description
// after a tab, for the first argument (or every one when all). A daemon
// that does not answer offers nothing rather than an error.
func complete[T any](cmd *cobra.Command, args []string, all bool, list func(context.Context) ([]T, error), item func(T) string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 && !all {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	xs, err := list(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, x := range xs {
		out = append(out, item(x))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// outputFlag adds -o/--output to a listing or show command.
func outputFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVarP(v, "output", "o", "table", "output format: table or json")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output %q: want table or json: %w", o, errInvalidUsage)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }
func (t *table) flush()             { t.tw.Flush() }

func humanSize(n int64) string {
	if n < 0 {
		n = 0
	}
	return humanize.IBytes(uint64(n))
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < 2*time.Minute:
		return "a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 2*time.Hour:
		return "an hour ago"
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// seesOwners says whether listings show an OWNER column: root's show
// every user's objects; anyone else's only its own.
func seesOwners() bool { return os.Geteuid() == 0 }

// ownerName is a uid as people read it: the user's name when this host
// knows it, else the number.
func ownerName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// ownerCol puts owner (the OWNER column's header or value) after the
// first column when owners shows.
func ownerCol(owners bool, owner string, cols ...string) []string {
	if !owners {
		return cols
	}
	return append([]string{cols[0], owner}, cols[1:]...)
}
