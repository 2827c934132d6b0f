// Package names validates the names users give to kernels, images and VMs,
// so that no path is ever built from raw user input, and suggests close
// names when one is not found.
package names

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agnivade/levenshtein"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// MaxLen is the longest name accepted. It keeps names usable as host names
// and file names.
const MaxLen = 63

var valid = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Validate checks that name is usable for an object of the given kind
// ("kernel", "image", "vm"). The error explains the rule.
func Validate(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty: %w", kind, errdefs.ErrInvalid)
	case len(name) > MaxLen:
		return fmt.Errorf("%s name is %d characters long, the limit is %d: %w", kind, len(name), MaxLen, errdefs.ErrInvalid)
	case !valid.MatchString(name) || name == "." || name == "..":
		return fmt.Errorf("%s name %q is not valid: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit: %w", kind, name, errdefs.ErrInvalid)
	}
	return nil
}

// Suggest returns up to three candidates close to name, closest first.
func Suggest(name string, candidates []string) []string {
	type scored struct {
		s string
		d int
	}
	var close []scored
	limit := len(name)/3 + 2
	seen := map[string]bool{}
	for _, c := range candidates {
		if seen[c] || c == name {
			continue
		}
		seen[c] = true
		d := levenshtein.ComputeDistance(name, c)
		if d <= limit || (len(name) >= 3 && len(c) > len(name) && c[:len(name)] == name) {
			close = append(close, scored{c, d})
		}
	}
	sort.Slice(close, func(i, j int) bool {
		if close[i].d != close[j].d {
			return close[i].d < close[j].d
		}
		return close[i].s < close[j].s
	})
	var out []string
	for i := 0; i < len(close) && i < 3; i++ {
		out = append(out, close[i].s)
	}
	return out
}

// QuoteList renders names as "a", "b", "c".
func QuoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// Hint is the hint of a not-found error: close candidates to name, or
// otherwise when there are none.
func Hint(name string, candidates []string, otherwise string) string {
	if sug := Suggest(name, candidates); len(sug) > 0 {
		return "did you mean " + QuoteList(sug) + "?"
	}
	return otherwise
}

// InUse describes what uses an image or a kernel, for rm's refusal: the
// dependents mine says the caller owns by kind and name, the others only
// counted, so that the refusal never reveals what another user has.
func InUse(ds []api.Dependent, mine func(owner uint32) bool) string {
	var parts []string
	others := map[string]int{}
	for _, d := range ds {
		if mine(d.Owner) {
			parts = append(parts, fmt.Sprintf("%s %q", d.Kind, d.Name))
		} else {
			others[d.Kind]++
		}
	}
	for _, kind := range []string{"vm", "snapshot"} {
		if n := others[kind]; n > 0 {
			parts = append(parts, countOthers(n, kind))
		}
	}
	if len(parts) < 2 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// countOthers is "1 VM of another user" or "2 snapshots of other users".
func countOthers(n int, kind string) string {
	noun := kind
	if kind == "vm" {
		noun = "VM"
	}
	if n == 1 {
		return fmt.Sprintf("1 %s of another user", noun)
	}
	return fmt.Sprintf("%d %ss of other users", n, noun)
}

var (
	adjectives = []string{"amber", "bold", "brave", "calm", "clever", "crisp", "eager", "fast", "gentle", "glad",
		"keen", "kind", "lucid", "merry", "nimble", "proud", "quick", "quiet", "rapid", "sharp", "shy", "snappy",
		"steady", "sunny", "swift", "tidy", "vivid", "warm", "wise", "zesty"}
	nouns = []string{"otter", "falcon", "badger", "heron", "lynx", "marten", "panda", "puffin", "quokka", "raven",
		"robin", "salmon", "seal", "sparrow", "stoat", "swan", "tapir", "tern", "viper", "walrus", "wombat", "yak",
		"zebra", "bison", "crane", "dingo", "egret", "finch", "gecko", "ibex"}
)

// Generate returns a free name such as "swift-otter", or "swift-otter-2"
// when every pair tried is taken.
func Generate(taken func(string) bool, rnd func(n int) int) string {
	for try := 0; try < 20; try++ {
		n := adjectives[rnd(len(adjectives))] + "-" + nouns[rnd(len(nouns))]
		if !taken(n) {
			return n
		}
	}
	base := adjectives[rnd(len(adjectives))] + "-" + nouns[rnd(len(nouns))]
	for i := 2; ; i++ {
		if n := fmt.Sprintf("%s-%d", base, i); !taken(n) {
			return n
		}
	}
}

// MaxLabel is the longest label (Label) accepted.
const MaxLabel = 4096

// Label checks text a client gives the daemon to show to people (where
// files came from, the checkout an agent serves): at most MaxLabel bytes
// of printable UTF-8, so that it cannot garble a terminal or a log.
func Label(field, s string) error {
	if len(s) > MaxLabel || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s %q: at most %d printable characters: %w", field, s, MaxLabel, errdefs.ErrInvalid)
	}
	return nil
}
