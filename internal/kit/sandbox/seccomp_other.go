//go:build !amd64

package sandbox

import "fmt"

// installFilter refuses to run a helper unfiltered: the filter's system
// call table is written for amd64 only.
func installFilter() error {
	return fmt.Errorf("the sandbox's seccomp filter is written for amd64 only")
}
