package secretproxy

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// splitTarget validates a CONNECT or absolute-form authority: a DNS name
// or an IP address, and a port of 1-65535 (defaultPort when absent and
// defaultPort is not ""). The host comes back lower-case, without a
// trailing dot or IPv6 brackets.
func splitTarget(authority, defaultPort string) (host, port string, err error) {
	if len(authority) > 300 {
		return "", "", errors.New("the target is too long")
	}
	host, port, err = net.SplitHostPort(authority)
	if err != nil {
		if defaultPort == "" || strings.Contains(authority, "]") && !strings.HasSuffix(authority, "]") {
			return "", "", errors.New("the target is not host:port")
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]"), defaultPort
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
		return "", "", errors.New("the port is not a number of 1-65535")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", "", errors.New("the target has an IPv6 zone")
		}
		return a.Unmap().String(), port, nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !validDNSName(host) {
		return "", "", errors.New("the host is neither a DNS name nor an IP address")
	}
	return host, port, nil
}

// validDNSName accepts host names as resolvers do: dot-separated labels of
// 1-63 letters, digits, '-' and '_' (some real services' names have one),
// not starting or ending with '-', 253 bytes at most, and not all digits
// in the last label (which would be a mistyped IPv4 address).
func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// hostMatches reports whether a secret bound to pattern may go to host:
// an exact name, or "*.x" for any name under x (not x itself, which is
// named on its own when meant).
func hostMatches(pattern, host string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		return len(host) > len(rest)+1 && strings.HasSuffix(host, rest) && host[len(host)-len(rest)-1] == '.'
	}
	return pattern == host
}

// normalizePattern lower-cases a binding and drops a trailing dot, as
// splitTarget does for hosts, so the two compare.
func normalizePattern(p string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(p), "."))
}

// hostPort is host and port as a URL authority, the port left out when it
// is the scheme's default.
func hostPort(host, port, defaultPort string) string {
	if port == defaultPort {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}
