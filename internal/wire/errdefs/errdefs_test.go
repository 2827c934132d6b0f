package errdefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
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

func TestQuote(t *testing.T) {
	long := strings.Repeat("a", 5000)
	for _, tt := range []struct {
		name, in, want string
	}{
		{"short", "etc/passwd", `"etc/passwd"`},
		{"empty", "", `""`},
		{"exactly the width", strings.Repeat("b", 64), `"` + strings.Repeat("b", 64) + `"`},
		{"long", long, `"` + strings.Repeat("a", 64) + `"... (5000 bytes)`},
		{"control characters escaped", "a\x00b\x1b[2J", `"a\x00b\x1b[2J"`},
		// The bound is on the escaped width: 16 NULs are 64 characters.
		{"escapes count", strings.Repeat("\x00", 100), `"` + strings.Repeat(`\x00`, 16) + `"... (100 bytes)`},
		// A cut never splits a rune.
		{"runes whole", strings.Repeat("é", 40), `"` + strings.Repeat("é", 32) + `"... (80 bytes)`},
		{"invalid UTF-8", "\xff\xfe", `"\xff\xfe"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quote(tt.in); got != tt.want {
				t.Errorf("Quote = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWithoutPath(t *testing.T) {
	name := strings.Repeat("n", 5000)
	for _, err := range []error{
		&fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission},
		fmt.Errorf("wrapped: %w", &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}),
		&os.LinkError{Op: "symlink", Old: name, New: name, Err: fs.ErrPermission},
	} {
		got := WithoutPath(err)
		if strings.Contains(got.Error(), "nnnn") || !errors.Is(got, fs.ErrPermission) {
			t.Errorf("WithoutPath(%.40v...) = %v", err, got)
		}
	}
	if plain := errors.New("plain"); WithoutPath(plain) != plain {
		t.Error("WithoutPath changed an error without a path")
	}
}
