package secretproxy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
)

const (
	// minRandom random characters of 62 kinds carry 190 bits: a guest
	// cannot guess another VM's placeholder, and no header or body will hold
	// one by accident.
	minRandom = 32
	// maxPrefix bounds the kept shape prefix: enough for "github_pat_",
	// short enough that no real part of a token goes along with it.
	maxPrefix = 12
	alphabet  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// NewPlaceholder returns a fresh random placeholder for value: the value's
// shape prefix kept (the leading "ghp_", "github_pat_", "sk-", "glpat-",
// "xoxb-" style prefix: the longest leading run of [A-Za-z0-9] ending in
// '_' or '-' that is at most 12 bytes and is followed by more characters;
// none if there is no such prefix), then random [A-Za-z0-9] characters, at
// least 32 of them (>= 190 bits), and as many as make the placeholder as
// long as the value when the value is longer. It never contains the value.
//
// The prefix is kept because tools check a token's shape before sending
// it (and secret scanners recognise it); the length because some check its
// length too.
func NewPlaceholder(value string) (string, error) {
	if value == "" {
		return "", errors.New("secretproxy: placeholder for an empty value")
	}
	prefix := shapePrefix(value)
	n := max(minRandom, len(value)-len(prefix))
	buf := make([]byte, len(prefix)+n)
	copy(buf, prefix)
	for {
		if err := randomAlnum(buf[len(prefix):]); err != nil {
			return "", fmt.Errorf("secretproxy: random placeholder: %w", err)
		}
		// A short value can turn up in 32 random characters by chance.
		if ph := string(buf); !strings.Contains(ph, value) {
			return ph, nil
		}
	}
}

// shapePrefix is the longest prefix of value made of [A-Za-z0-9_-],
// starting with a letter or digit, ending in '_' or '-', at most maxPrefix
// bytes and shorter than value.
func shapePrefix(value string) string {
	end := 0
	for i := 0; i < len(value) && i < maxPrefix; i++ {
		c := value[i]
		switch {
		case isAlnum(c):
		case (c == '_' || c == '-') && i > 0:
			if i+1 < len(value) {
				end = i + 1
			}
		default:
			return value[:end]
		}
	}
	return value[:end]
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// randomAlnum fills b with uniform characters of alphabet: bytes of 248 or
// more are dropped so that the modulo does not favour the first letters.
func randomAlnum(b []byte) error {
	var pool [64]byte
	i := 0
	for i < len(b) {
		if _, err := rand.Read(pool[:]); err != nil {
			return err
		}
		for _, r := range pool {
			if r >= 248 {
				continue
			}
			b[i] = alphabet[r%62]
			i++
			if i == len(b) {
				break
			}
		}
	}
	return nil
}
