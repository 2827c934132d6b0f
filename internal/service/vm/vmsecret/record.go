package vmsecret

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/service/secretproxy"
	"github.com/banger-dev/banger/internal/wire/api"
)

// File is the record's name in a VM's directory: what the VM was given
// (names and hosts, never values or placeholders) and what was done with
// it, kept across stops and daemon restarts until the VM is removed.
const File = "secrets.json"

// maxAttempts bounds the distinct (host, why) pairs kept per secret: a
// guest choosing hosts at will must not grow the record without end.
const maxAttempts = 100

// record is one VM's, written to its directory at most once a second.
type record struct {
	path string
	mu   sync.Mutex
	sec  map[string]*api.VMSecret
	// saving is set while a write is scheduled.
	saving bool
}

func loadRecord(dir string) *record {
	r := &record{path: filepath.Join(dir, File), sec: map[string]*api.VMSecret{}}
	b, err := os.ReadFile(r.path)
	if err != nil {
		return r
	}
	var list []api.VMSecret
	if json.Unmarshal(b, &list) != nil {
		return r
	}
	for i := range list {
		list[i].Held = false
		r.sec[list[i].Name] = &list[i]
	}
	return r
}

// View reads a VM's record from its directory.
func View(dir string) []api.VMSecret {
	return loadRecord(dir).list(nil)
}

// given notes secrets given, replacing what was known of their hosts.
func (r *record) given(gs []api.SecretGrant) {
	r.mu.Lock()
	for _, g := range gs {
		s, ok := r.sec[g.Name]
		if !ok {
			s = &api.VMSecret{Name: g.Name}
			r.sec[g.Name] = s
		}
		s.Hosts, s.Env, s.File = g.Hosts, g.Env, g.File
	}
	r.mu.Unlock()
	r.save()
}

// event counts a use or an attempt; it says whether this (secret, host,
// kind) is new, for the log.
func (r *record) event(e secretproxy.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sec[e.Secret]
	if !ok {
		return false
	}
	defer r.later()
	if e.Kind == "use" {
		s.Uses++
		first := s.LastUse.IsZero()
		s.LastUse = e.Time
		return first
	}
	for i := range s.Attempts {
		if a := &s.Attempts[i]; a.Host == e.Host && a.Why == e.Why {
			a.Count++
			a.Last = e.Time
			return false
		}
	}
	host := e.Host
	if len(s.Attempts) >= maxAttempts {
		// Past the bound, one line counts the rest.
		host = "(other hosts)"
		for i := range s.Attempts {
			if a := &s.Attempts[i]; a.Host == host {
				a.Count++
				a.Last = e.Time
				return false
			}
		}
	}
	s.Attempts = append(s.Attempts, api.SecretAttempt{Host: host, Why: e.Why, Count: 1, Last: e.Time})
	return true
}

// list is the record, sorted; held names the secrets whose values are
// held now.
func (r *record) list(held map[string]bool) []api.VMSecret {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []api.VMSecret{}
	for _, s := range r.sec {
		c := *s
		c.Attempts = append([]api.SecretAttempt(nil), s.Attempts...)
		c.Held = held[c.Name]
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// later schedules a save; r.mu is held.
func (r *record) later() {
	if r.saving {
		return
	}
	r.saving = true
	time.AfterFunc(time.Second, r.save)
}

// save writes the record whole (a crash leaves the old one or the new).
func (r *record) save() {
	r.mu.Lock()
	r.saving = false
	r.mu.Unlock()
	b, _ := json.MarshalIndent(r.list(nil), "", "  ")
	if _, err := os.Stat(filepath.Dir(r.path)); err != nil {
		return // the VM was removed
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return
	}
	os.Rename(tmp, r.path)
}
