package errdefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
)

func TestMessageAndCode(t *testing.T) {
	_, osErr := os.Open("/nonexistent-dir/x")
	denied := &fs.PathError{Op: "open", Path: "/etc/shadow", Err: fs.ErrPermission}
	for _, tt := range []struct {
		err  error
		msg  string
		code string
	}{
		{fmt.Errorf("kernel %q: %w", "k", ErrNotFound), `kernel "k"`, "not_found"},
		{fmt.Errorf("-p 80:80: root only: %w", ErrPermission), "-p 80:80: root only", "permission_denied"},
		// The OS's own words stay: they are what the user must read.
		{fmt.Errorf("--initrd: %w", denied), "--initrd: open /etc/shadow: permission denied", "internal"},
		{osErr, osErr.Error(), "internal"},
	} {
		if got := Message(tt.err); got != tt.msg {
			t.Errorf("Message(%v) = %q, want %q", tt.err, got, tt.msg)
		}
		if got := Code(tt.err); got != tt.code {
			t.Errorf("Code(%v) = %q, want %q", tt.err, got, tt.code)
		}
		if s := FromCode(Code(tt.err)); tt.code != "internal" && !errors.Is(tt.err, s) {
			t.Errorf("FromCode(%q) = %v, not the sentinel of %v", tt.code, s, tt.err)
		}
	}
}
