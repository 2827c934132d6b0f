package secretproxy

import (
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	ghValue   = "ghp_realVALUEgithub0123456789abcdefABCDEF"
	npmValue  = "npm_realVALUEnpm0123456789abcdefghijklmn"
	wildValue = "wild-realVALUEwild0123456789"
	evilValue = "evil-realVALUEevil0123456789"
)

type testSecrets struct{ gh, npm, wild, evil Secret }

func newTestSecrets(t testing.TB) testSecrets {
	return testSecrets{
		gh:   Secret{Name: "gh", Value: ghValue, Placeholder: mustPlaceholder(t, ghValue), Hosts: []string{"api.test", "plain.test"}},
		npm:  Secret{Name: "npm", Value: npmValue, Placeholder: mustPlaceholder(t, npmValue), Hosts: []string{"Other.test"}},
		wild: Secret{Name: "wild", Value: wildValue, Placeholder: mustPlaceholder(t, wildValue), Hosts: []string{"*.wild.test"}},
		evil: Secret{Name: "evil", Value: evilValue, Placeholder: mustPlaceholder(t, evilValue), Hosts: []string{"evil.test", "down.test"}},
	}
}

func (s testSecrets) all() []Secret { return []Secret{s.gh, s.npm, s.wild, s.evil} }

// A request's headers get the values of the secrets bound to its host
// and nothing else: over HTTP/1.1 and HTTP/2, in Bearer and inside Basic
// credentials; elsewhere (another secret's placeholder, the URL, plain
// HTTP, a host no secret names) placeholders go out as they came, and
// each is recorded.
func TestSubstitution(t *testing.T) {
	s := newTestSecrets(t)
	e := newEnv(t, s.all()...)
	type want struct {
		intercepted bool
		check       func(t *testing.T, got seen, resp *http.Response)
		events      []Event // Secret, Kind, Why, Host, Method, Path
	}
	bearer := func(ph string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+ph) }
	}
	header := func(k, v string) func(t *testing.T, got seen, _ *http.Response) {
		return func(t *testing.T, got seen, _ *http.Response) {
			t.Helper()
			if g := got.Header.Get(k); g != v {
				t.Errorf("the server got %s %q, want %q", k, g, v)
			}
		}
	}
	use := func(name, host, path string) Event {
		return Event{Secret: name, Kind: "use", Host: host, Method: "GET", Path: path}
	}
	attempt := func(name, why, host, path string) Event {
		return Event{Secret: name, Kind: "attempt", Why: why, Host: host, Method: "GET", Path: path}
	}
	cases := []struct {
		name  string
		url   string
		setup func(*http.Request)
		want  want
	}{
		{"bearer for a bound host", "https://api.test/v1/user", bearer(s.gh.Placeholder), want{true,
			header("Authorization", "Bearer "+ghValue), []Event{use("gh", "api.test", "/v1/user")}}},
		{"basic password for a bound host", "https://api.test/repo.git/info/refs?service=git-upload-pack",
			func(r *http.Request) { r.SetBasicAuth("x", s.gh.Placeholder) }, want{true,
				func(t *testing.T, got seen, _ *http.Response) {
					r := &http.Request{Header: got.Header}
					if u, pw, ok := r.BasicAuth(); !ok || u != "x" || pw != ghValue {
						t.Errorf("the server got Basic %q:%q (ok %v), want x and the value", u, pw, ok)
					}
				}, []Event{use("gh", "api.test", "/repo.git/info/refs")}}},
		{"several headers, one event", "https://api.test/", func(r *http.Request) {
			r.Header.Set("X-Token", s.gh.Placeholder)
			r.Header.Add("X-Note", "a "+s.gh.Placeholder+" b "+s.gh.Placeholder)
		}, want{true, func(t *testing.T, got seen, resp *http.Response) {
			header("X-Token", ghValue)(t, got, resp)
			header("X-Note", "a "+ghValue+" b "+ghValue)(t, got, resp)
		}, []Event{use("gh", "api.test", "/")}}},
		{"another secret's placeholder", "https://api.test/x", bearer(s.npm.Placeholder), want{true,
			header("Authorization", "Bearer "+s.npm.Placeholder), []Event{attempt("npm", "not bound to this host", "api.test", "/x")}}},
		{"wildcard binding, subdomain", "https://x.wild.test/", bearer(s.wild.Placeholder), want{true,
			header("Authorization", "Bearer "+wildValue), []Event{use("wild", "x.wild.test", "/")}}},
		{"wildcard binding, not the apex", "https://wild.test/", bearer(s.wild.Placeholder), want{false,
			header("Authorization", "Bearer "+s.wild.Placeholder), nil}},
		{"host no secret names", "https://free.test/", bearer(s.gh.Placeholder), want{false,
			header("Authorization", "Bearer "+s.gh.Placeholder), nil}},
		{"plain http to a bound host", "http://plain.test/p?q=1", bearer(s.gh.Placeholder), want{false,
			header("Authorization", "Bearer "+s.gh.Placeholder), []Event{attempt("gh", "plain http (no TLS)", "plain.test", "/p")}}},
		{"placeholder in the query", "https://api.test/search?token=" + s.gh.Placeholder, nil, want{true,
			func(t *testing.T, got seen, _ *http.Response) {
				if got.URI != "/search?token="+s.gh.Placeholder {
					t.Errorf("the server got %q", got.URI)
				}
			}, []Event{attempt("gh", "in the URL", "api.test", "/search")}}},
		{"placeholder in the path, escaped", "https://api.test/a%2F" + s.gh.Placeholder, nil, want{true,
			func(t *testing.T, got seen, _ *http.Response) {
				if !strings.Contains(got.URI, s.gh.Placeholder) {
					t.Errorf("the server got %q", got.URI)
				}
			}, []Event{attempt("gh", "in the URL", "api.test", "/a/"+s.gh.Placeholder)}}},
		{"a value echoed in a response header", "https://api.test/echo", bearer(s.gh.Placeholder), want{true,
			func(t *testing.T, got seen, resp *http.Response) {
				header("Authorization", "Bearer "+ghValue)(t, got, resp)
				if g := resp.Header.Get("X-Echo"); g != "Bearer "+s.gh.Placeholder {
					t.Errorf("the guest got X-Echo %q, want the placeholder back", g)
				}
			}, []Event{use("gh", "api.test", "/echo")}}},
		{"Proxy-Authorization is not forwarded", "https://api.test/", func(r *http.Request) {
			r.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("x:"+s.gh.Placeholder)))
			r.Header.Set("Proxy-Connection", "keep-alive")
		}, want{true, func(t *testing.T, got seen, _ *http.Response) {
			for _, k := range []string{"Proxy-Authorization", "Proxy-Connection"} {
				if v := got.Header.Values(k); v != nil {
					t.Errorf("the server got %s %q", k, v)
				}
			}
		}, nil}},
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		h2 := proto == "HTTP/2"
		client := e.client(t, h2)
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				e.takeEvents()
				req, _ := http.NewRequest("GET", tc.url, nil)
				if tc.setup != nil {
					tc.setup(req)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				srv := e.api
				if strings.HasPrefix(tc.url, "http:") {
					srv = e.plain
				} else {
					issuer := resp.TLS.PeerCertificates[0].Issuer.CommonName
					if tc.want.intercepted && issuer != "banger VM test secrets CA" || !tc.want.intercepted && issuer != "test public CA" {
						t.Errorf("the guest saw a certificate of %q (intercepted: %v)", issuer, tc.want.intercepted)
					}
					if h2 && resp.ProtoMajor != 2 {
						t.Errorf("the guest got %s, want HTTP/2", resp.Proto)
					}
				}
				got := srv.last(t)
				if tc.want.intercepted && got.Host != strings.Split(req.URL.Host, ":")[0] {
					t.Errorf("the server got Host %q", got.Host)
				}
				tc.want.check(t, got, resp)
				evs := e.takeEvents()
				for i := range evs {
					if evs[i].Time.IsZero() {
						t.Errorf("event %+v has no time", evs[i])
					}
					evs[i].Time = time.Time{}
				}
				if !slices.Equal(evs, tc.want.events) {
					t.Errorf("events %+v, want %+v", evs, tc.want.events)
				}
			})
		}
	}
}
