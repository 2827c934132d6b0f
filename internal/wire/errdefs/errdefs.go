// Package errdefs holds the few error values shared by every service.
//
// Services wrap them with the object's name (fmt.Errorf("kernel %q: %w",
// name, errdefs.ErrNotFound)); the API layer maps them to HTTP status codes
// and stable machine codes exactly once, at the edge. Untrusted text goes
// into an error through Quote, never in full.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object exists already, or is in use.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request or its input (a name, a file, a catalog) is malformed.
	ErrInvalid = errors.New("invalid")
	// ErrChecksum: downloaded or supplied content does not match its checksum.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrUnavailable: a source or host dependency could not be reached or used.
	ErrUnavailable = errors.New("unavailable")
	// ErrCanceled: the operation was canceled and undone.
	ErrCanceled = errors.New("canceled")
	// ErrPermission: the caller may not do this (it could not itself). Not
	// "permission denied", which Message would strip from the OS's errors.
	ErrPermission = errors.New("forbidden")
	// ErrQuota: the caller's VMs already take what its quota allows.
	ErrQuota = errors.New("over quota")
)

// Code returns the stable machine code for err, as used on the wire.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrChecksum):
		return "checksum_mismatch"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrPermission):
		return "permission_denied"
	case errors.Is(err, ErrQuota):
		return "quota_exceeded"
	default:
		return "internal"
	}
}

// FromCode turns a wire code back into the matching sentinel, so that
// clients can use errors.Is on errors that crossed the socket.
func FromCode(code string) error {
	switch code {
	case "not_found":
		return ErrNotFound
	case "conflict":
		return ErrConflict
	case "invalid":
		return ErrInvalid
	case "checksum_mismatch":
		return ErrChecksum
	case "unavailable":
		return ErrUnavailable
	case "canceled":
		return ErrCanceled
	case "permission_denied":
		return ErrPermission
	case "quota_exceeded":
		return ErrQuota
	default:
		return nil
	}
}

// Message renders err for people: the sentinels' own words (": not
// found") are left out, since the machine code carries them.
func Message(err error) string {
	msg := err.Error()
	for _, s := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrChecksum, ErrUnavailable, ErrCanceled, ErrPermission, ErrQuota} {
		msg = strings.ReplaceAll(msg, ": "+s.Error(), "")
	}
	return msg
}

// quoteWidth bounds how much of an untrusted string Quote shows, counted
// after escaping.
const quoteWidth = 64

// Quote renders untrusted text for an error message (a name from an
// image layer, a guest's tar or SFTP server, a link's target): escaped
// as %q does, and when longer than quoteWidth escaped bytes, cut there
// and followed by its length. Hostile input then makes neither an error
// of any size nor control characters in a terminal or a log.
func Quote(s string) string {
	cut, width := 0, 0
	for cut < len(s) {
		_, size := utf8.DecodeRuneInString(s[cut:])
		// strconv.Quote escapes rune by rune (an invalid byte alone), so
		// the quoted prefix is as wide as the sum of its runes.
		w := len(strconv.Quote(s[cut:cut+size])) - 2
		if width+w > quoteWidth {
			break
		}
		width += w
		cut += size
	}
	if cut == len(s) {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// WithoutPath returns the error under an *fs.PathError or *os.LinkError,
// whose paths hold an untrusted name in full: the caller says which
// entry failed, through Quote.
func WithoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
