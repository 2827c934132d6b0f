// Package errdefs holds the few error values shared by every service.
//
// Services wrap them with the object's name (fmt.Errorf("kernel %q: %w",
// name, errdefs.ErrNotFound)); the API layer maps them to HTTP status codes
// and stable machine codes exactly once, at the edge.
package errdefs

import (
	"context"
	"errors"
	"strings"
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
	default:
		return nil
	}
}

// Message renders err for people: the sentinels' own words (": not
// found") are left out, since the machine code carries them.
func Message(err error) string {
	msg := err.Error()
	for _, s := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrChecksum, ErrUnavailable, ErrCanceled, ErrPermission} {
		msg = strings.ReplaceAll(msg, ": "+s.Error(), "")
	}
	return msg
}
