package clikit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

// Complete offers names from a daemon listing, each with a description
// after a tab, for the first argument (or every one when all). A daemon
// that does not answer offers nothing rather than an error.
func Complete[T any](cmd *cobra.Command, args []string, all bool, list func(context.Context) ([]T, error), item func(T) string) ([]string, cobra.ShellCompDirective) {
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

// PrintJSON writes v as indented JSON, what -o json prints.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table writes aligned columns.
type Table struct {
	tw *tabwriter.Writer
}

// NewTable starts a table with its header row.
func NewTable(w io.Writer, headers ...string) *Table {
	t := &Table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.Row(headers...)
	return t
}

func (t *Table) Row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }
func (t *Table) Flush()             { t.tw.Flush() }

func HumanSize(n int64) string {
	if n < 0 {
		n = 0
	}
	return humanize.IBytes(uint64(n))
}

func Ago(t time.Time) string {
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

func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// SeesOwners says whether listings show an OWNER column: root's show
// every user's objects; anyone else's only its own.
func SeesOwners() bool { return os.Geteuid() == 0 }

// OwnerName is a uid as people read it: the user's name when this host
// knows it, else the number.
func OwnerName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// OwnerCol puts owner (the OWNER column's header or value) after the
// first column when owners shows.
func OwnerCol(owners bool, owner string, cols ...string) []string {
	if !owners {
		return cols
	}
	return append([]string{cols[0], owner}, cols[1:]...)
}

// Counter counts the bytes written through the writers it wraps, for a
// command's record (its output's size).
type Counter struct{ n atomic.Int64 }

// Wrap returns a writer to w that counts what goes through it.
func (c *Counter) Wrap(w io.Writer) io.Writer { return countWriter{w, c} }

// N is the bytes counted so far.
func (c *Counter) N() int64 { return c.n.Load() }

type countWriter struct {
	w io.Writer
	c *Counter
}

func (cw countWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.c.n.Add(int64(n))
	return n, err
}
