// Package digest computes the content digests banger records.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"
)

// File returns "sha256:<hex>" of the file at path.
func File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Short is a digest's first 12 hex digits, enough to tell builds apart
// in a file name or a listing.
func Short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}
