package vmwork

import (
	"fmt"
	"testing"

	"github.com/banger-dev/banger/internal/wire/api"
)

func TestCompareTrees(t *testing.T) {
	was := map[string]node{
		"etc":        {typ: "dir", sum: "755"},
		"etc/passwd": {typ: "file", size: 10, sum: "a"},
		"etc/group":  {typ: "file", size: 5, sum: "b"},
		"bin/sh":     {typ: "symlink", size: 0, sum: "busybox"},
		"usr":        {typ: "dir", sum: "755"},
		"opt":        {typ: "dir", sum: "755"},
	}
	now := map[string]node{
		"etc":              {typ: "dir", sum: "755"},
		"etc/passwd":       {typ: "file", size: 12, sum: "a2"}, // content
		"etc/group":        {typ: "file", size: 5, sum: "b"},   // same
		"bin/sh":           {typ: "file", size: 100, sum: "x"}, // a link became a file
		"usr":              {typ: "dir", sum: "700"},           // mode
		"root/outside.txt": {typ: "file", size: 8, sum: "new"}, // added
	}
	got := compareTrees(was, now)
	str := func(l []api.FileChange) string { return fmt.Sprint(l) }
	if want := "[{root/outside.txt file 8 0}]"; str(got.Added) != want {
		t.Errorf("added %s, want %s", str(got.Added), want)
	}
	if want := "[{bin/sh file 100 0} {etc/passwd file 12 10} {usr dir 0 0}]"; str(got.Changed) != want {
		t.Errorf("changed %s, want %s", str(got.Changed), want)
	}
	if want := "[{opt dir 0 0}]"; str(got.Removed) != want {
		t.Errorf("removed %s, want %s", str(got.Removed), want)
	}
	if got.Truncated {
		t.Error("truncated")
	}
	// Each list is bounded, and says so.
	many := map[string]node{}
	for i := range api.MaxRootChanges + 5 {
		many[fmt.Sprintf("f%05d", i)] = node{typ: "file", sum: "x"}
	}
	if b := compareTrees(map[string]node{}, many); len(b.Added) != api.MaxRootChanges || !b.Truncated {
		t.Errorf("%d added kept of %d, truncated %v", len(b.Added), len(many), b.Truncated)
	}
}
