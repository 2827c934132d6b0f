// Package units parses the sizes users type: "512", "512M", "2G", "2GiB".
package units

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Binary multiples. Sizes are binary, as in qemu-img, docker and Lima:
// "2G" is 2 GiB.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

// ParseSize parses a size; a bare number counts in unit.
func ParseSize(s string, unit int64) (int64, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRight(t, "KkMmGgTtiIbB")
	suffix := strings.ToUpper(t[len(num):])
	suffix = strings.TrimSuffix(strings.TrimSuffix(suffix, "B"), "I")
	mult := unit
	switch suffix {
	case "":
	case "K":
		mult = KiB
	case "M":
		mult = MiB
	case "G":
		mult = GiB
	case "T":
		mult = TiB
	default:
		return 0, fmt.Errorf("size %q: unknown unit (use K, M, G or T): %w", s, errdefs.ErrInvalid)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q is not a number with an optional unit, like 512M or 2G: %w", s, errdefs.ErrInvalid)
	}
	v := n * float64(mult)
	if v > float64(1<<62) {
		return 0, fmt.Errorf("size %q is too large: %w", s, errdefs.ErrInvalid)
	}
	return int64(v), nil
}
