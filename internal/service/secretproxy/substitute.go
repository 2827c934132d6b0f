package secretproxy

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	kindUse     = "use"
	kindAttempt = "attempt"

	whyUnbound = "not bound to this host"
	whyPlain   = "plain http (no TLS)"
	whyURL     = "in the URL"

	// maxEventPath keeps a hostile guest's 60 KiB path out of the
	// caller's records.
	maxEventPath = 1024
)

// secret is a Secret as the proxy holds it, its hosts normalised.
type secret struct {
	name, value, placeholder string
	hosts                    []string
}

func (s *secret) boundTo(host string) bool {
	for _, h := range s.hosts {
		if hostMatches(h, host) {
			return true
		}
	}
	return false
}

// scan is one request's pass over its headers and URL: it replaces the
// placeholders it may and notes what it saw, at most one event per secret
// and kind.
type scan struct {
	host    string
	replace bool // a TLS-terminated request: bound placeholders become values
	secrets []secret
	events  []Event
}

func (s *scan) note(name, kind, why string) {
	for _, e := range s.events {
		if e.Secret == name && e.Kind == kind {
			return
		}
	}
	s.events = append(s.events, Event{Secret: name, Kind: kind, Why: why})
}

// text replaces in v, in one pass, the placeholders of the secrets bound
// to the host (one pass: a value that happened to hold another
// placeholder must not be replaced again).
func (s *scan) text(v string) string {
	var pairs []string
	for i := range s.secrets {
		sec := &s.secrets[i]
		if !strings.Contains(v, sec.placeholder) {
			continue
		}
		switch {
		case !s.replace:
			s.note(sec.name, kindAttempt, whyPlain)
		case sec.boundTo(s.host):
			pairs = append(pairs, sec.placeholder, sec.value)
			s.note(sec.name, kindUse, "")
		default:
			s.note(sec.name, kindAttempt, whyUnbound)
		}
	}
	switch len(pairs) {
	case 0:
		return v
	case 2:
		return strings.ReplaceAll(v, pairs[0], pairs[1])
	}
	return strings.NewReplacer(pairs...).Replace(v)
}

// basic looks inside a Basic credential, where a client that was given the
// placeholder as a password (git, pip, npm) puts it base64-encoded.
func (s *scan) basic(v string) string {
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return v
	}
	cred = strings.TrimSpace(cred)
	enc := base64.StdEncoding
	raw, err := enc.DecodeString(cred)
	if err != nil {
		enc = base64.RawStdEncoding
		if raw, err = enc.DecodeString(cred); err != nil {
			return v
		}
	}
	in := string(raw)
	out := s.text(in)
	if out == in {
		return v
	}
	return scheme + " " + enc.EncodeToString([]byte(out))
}

func (s *scan) headers(h http.Header) {
	for k, vs := range h {
		auth := k == "Authorization" || k == "Proxy-Authorization"
		for i, v := range vs {
			v = s.text(v)
			if auth {
				v = s.basic(v)
			}
			vs[i] = v
		}
	}
}

// url notes placeholders in the request target, raw and unescaped. They
// stay as they are: URLs end up in logs, histories and Referer headers,
// so a value must never be put in one.
func (s *scan) url(r *http.Request) {
	target := r.RequestURI
	if target == "" {
		target = r.URL.String()
	}
	forms := []string{target}
	if u, err := url.PathUnescape(target); err == nil && u != target {
		forms = append(forms, u)
	}
	if u, err := url.QueryUnescape(target); err == nil && u != target {
		forms = append(forms, u)
	}
	for i := range s.secrets {
		sec := &s.secrets[i]
		for _, f := range forms {
			if strings.Contains(f, sec.placeholder) {
				s.note(sec.name, kindAttempt, whyURL)
				break
			}
		}
	}
}

// rewrite scans an outgoing request's headers (h, a copy of r's) and r's
// URL for a request to host, replacing placeholders when replace is set,
// and records what it saw. Nothing is replaced once the proxy is closed:
// the check and the replacing happen under the lock Close takes.
func (p *Proxy) rewrite(r *http.Request, h http.Header, host string, replace bool) {
	p.mu.RLock()
	if p.closed || len(p.secrets) == 0 {
		p.mu.RUnlock()
		return
	}
	s := scan{host: host, replace: replace, secrets: p.secrets}
	s.headers(h)
	s.url(r)
	p.mu.RUnlock()
	// Record runs outside the lock: it may be slow, or call Add.
	p.emit(s.events, r, host)
}

func (p *Proxy) emit(events []Event, r *http.Request, host string) {
	if p.cfg.Record == nil || len(events) == 0 {
		return
	}
	path := r.URL.Path
	if len(path) > maxEventPath {
		path = path[:maxEventPath]
	}
	now := time.Now()
	for _, e := range events {
		e.Time, e.Host, e.Method, e.Path = now, host, r.Method, path
		p.cfg.Record(e)
	}
}

// scrubHeaders puts placeholders back where a server echoed a value in a
// response header (a debugging endpoint, an error that quotes the
// request), so the guest does not learn it that way.
func (p *Proxy) scrubHeaders(h http.Header) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, vs := range h {
		for i, v := range vs {
			for j := range p.secrets {
				if sec := &p.secrets[j]; strings.Contains(v, sec.value) {
					v = strings.ReplaceAll(v, sec.value, sec.placeholder)
				}
			}
			vs[i] = v
		}
	}
}

// scrub hides every value held in s: for texts that come from elsewhere
// (upstream errors, net/http's own log lines) on their way to a log or to
// the guest.
func (p *Proxy) scrub(s string) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for i := range p.secrets {
		if v := p.secrets[i].value; strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, "[secret "+p.secrets[i].name+"]")
		}
	}
	return s
}
