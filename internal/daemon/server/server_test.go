package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// fakeKernels is a hand-written fake of the kernel service.
type fakeKernels struct {
	mu      sync.Mutex
	kernels map[string]api.Kernel
	block   chan struct{} // when set, Pull waits on it or ctx
	// staged is what a blocked Pull wrote before it was canceled: a
	// canceled pull must remove it (as the real one removes its staging).
	staged map[string]bool
}

func (f *fakeKernels) List(context.Context) ([]api.Kernel, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.Kernel{}
	for _, k := range f.kernels {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
func (f *fakeKernels) Get(_ context.Context, name string) (api.Kernel, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.kernels[name]
	if !ok {
		return k, fmt.Errorf("no local kernel named %q: %w", name, errdefs.ErrNotFound)
	}
	return k, nil
}
func (f *fakeKernels) Catalog(context.Context) ([]api.KernelCatalogEntry, error) {
	return []api.KernelCatalogEntry{{Name: "k1"}}, nil
}
func (f *fakeKernels) CheckPull(_ context.Context, name string) error {
	if name != "k1" {
		return fmt.Errorf("no kernel catalog entry named %q: %w", name, errdefs.ErrNotFound)
	}
	return nil
}
func (f *fakeKernels) Pull(ctx context.Context, name string, p operation.Progress) (api.Kernel, error) {
	p.Stage("download", "downloading %s", name)
	p.Bytes("download", 50, 100)
	if f.block != nil {
		f.mu.Lock()
		if f.staged == nil {
			f.staged = map[string]bool{}
		}
		f.staged[name] = true
		f.mu.Unlock()
		select {
		case <-f.block:
		case <-ctx.Done():
			// Undo only when the cancel reached this operation's ctx.
			f.mu.Lock()
			delete(f.staged, name)
			f.mu.Unlock()
			return api.Kernel{}, fmt.Errorf("pull %s: %w", name, errdefs.ErrCanceled)
		}
	}
	k := api.Kernel{Name: name, Version: "6.1"}
	f.mu.Lock()
	f.kernels[name] = k
	f.mu.Unlock()
	return k, nil
}
func (f *fakeKernels) CheckImport(_ context.Context, req api.KernelImportRequest) error {
	if req.Deb == "" {
		return fmt.Errorf("give a deb: %w", errdefs.ErrInvalid)
	}
	return nil
}
func (f *fakeKernels) Import(ctx context.Context, req api.KernelImportRequest, p operation.Progress) (api.Kernel, error) {
	if req.Name == "bad" {
		return api.Kernel{}, fmt.Errorf("the deb holds no kernel: %w", errdefs.ErrInvalid)
	}
	return api.Kernel{Name: req.Name}, nil
}
func (f *fakeKernels) Share(_ context.Context, name string) (api.Kernel, error) {
	if name == "nope" {
		return api.Kernel{}, fmt.Errorf("no local kernel named %q: %w", name, errdefs.ErrNotFound)
	}
	return api.Kernel{Name: name, Shared: true}, nil
}
func (f *fakeKernels) Remove(_ context.Context, name string) error {
	if name == "used" {
		return fmt.Errorf("kernel %q is used by VM \"a\": %w", name, errdefs.ErrConflict)
	}
	return nil
}

func newTestServer(t *testing.T) (*httptest.Server, *fakeKernels, *operation.Registry) {
	t.Helper()
	fk := &fakeKernels{kernels: map[string]api.Kernel{}}
	ops := operation.NewRegistry(context.Background())
	s := New(Deps{
		Kernels: fk, Operations: ops,
		Status:  func(context.Context) (api.Status, error) { return api.Status{PID: 1}, nil },
		Version: api.VersionInfo{Version: "test"},
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, fk, ops
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.json and the served routes
// in step, both ways.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("../../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+api.Prefix+path)
		}
	}
	for _, r := range New(Deps{}).Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if !reflect.DeepEqual(documented, served) {
		t.Fatalf("openapi.json documents\n  %s\nbut the server serves\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}
}

func TestErrorsAreJSONWithStableCodes(t *testing.T) {
	srv, _, _ := newTestServer(t)
	tests := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v1/kernels/nope", "", 404, "not_found"},
		{"DELETE", "/v1/kernels/used", "", 409, "conflict"},
		{"POST", "/v1/kernels/nope/share", "", 404, "not_found"},
		{"POST", "/v1/kernels/zz/pull", "", 404, "not_found"},
		{"POST", "/v1/kernels/x/import", `{"deb":`, 400, "invalid"},
		{"POST", "/v1/kernels/x/import", `{"bogus":1}`, 400, "invalid"},
		{"POST", "/v1/kernels/x/import", `{"name":"y","deb":"/a"}`, 400, "invalid"},
		{"POST", "/v1/kernels/x/import", `{}`, 400, "invalid"},
		{"GET", "/v2/kernels", "", 404, "not_found"},
		{"DELETE", "/v1/operations/nope", "", 404, "not_found"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tt.status || e.Code != tt.code || e.Message == "" {
			t.Errorf("%s %s: %d %+v, want %d %s", tt.method, tt.path, resp.StatusCode, e, tt.status, tt.code)
		}
		if strings.HasSuffix(e.Message, ": not found") || strings.HasSuffix(e.Message, ": conflict") {
			t.Errorf("message repeats the code: %q", e.Message)
		}
		if strings.Contains(tt.body, `"name":"y"`) && !strings.Contains(e.Message, `body names kernel "y", path names "x"`) {
			t.Errorf("%s %s: %q does not say the names disagree", tt.method, tt.path, e.Message)
		}
	}
}

func TestShareAnswersTheKernel(t *testing.T) {
	srv, _, _ := newTestServer(t)
	resp, err := http.Post(srv.URL+"/v1/kernels/k/share", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var k api.Kernel
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil || resp.StatusCode != http.StatusOK || k.Name != "k" || !k.Shared {
		t.Fatalf("share: %d %+v %v", resp.StatusCode, k, err)
	}
}

func readEvents(t *testing.T, r io.Reader) []api.Event {
	t.Helper()
	var evs []api.Event
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad event line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestPullStreamsNDJSON(t *testing.T) {
	srv, _, _ := newTestServer(t)
	resp, err := http.Post(srv.URL+"/v1/kernels/k1/pull", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	evs := readEvents(t, resp.Body)
	types := []string{}
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	if strings.Join(types, ",") != "operation,progress,progress,result" {
		t.Fatalf("event types = %v", types)
	}
	if evs[0].Operation == "" || evs[0].Operation != resp.Header.Get("X-Banger-Operation") {
		t.Fatalf("operation id %q vs header %q", evs[0].Operation, resp.Header.Get("X-Banger-Operation"))
	}
	if evs[2].Done != 50 || evs[2].Total != 100 {
		t.Fatalf("bytes event = %+v", evs[2])
	}
	var k api.Kernel
	if err := json.Unmarshal(evs[3].Result, &k); err != nil || k.Name != "k1" {
		t.Fatalf("result = %s", evs[3].Result)
	}
}

func TestClientGoneOperationCompletes(t *testing.T) {
	srv, fk, ops := newTestServer(t)
	fk.block = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/kernels/k1/pull", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(resp.Body).ReadString('\n')
	cancel() // the client disconnects mid-operation
	resp.Body.Close()
	if len(ops.List(context.Background())) != 1 {
		t.Fatal("operation gone with its client")
	}
	close(fk.block)
	ops.Wait()
	if _, err := fk.Get(context.Background(), "k1"); err != nil {
		t.Fatalf("operation did not complete after the client left: %v", err)
	}
}

func TestCancelOperationUndoes(t *testing.T) {
	srv, fk, ops := newTestServer(t)
	fk.block = make(chan struct{})
	resp, err := http.Post(srv.URL+"/v1/kernels/k1/pull", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	id := resp.Header.Get("X-Banger-Operation")
	req, _ := http.NewRequest("DELETE", srv.URL+"/v1/operations/"+id, nil)
	dr, err := http.DefaultClient.Do(req)
	if err != nil || dr.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %v %v", dr, err)
	}
	evs := readEvents(t, resp.Body)
	last := evs[len(evs)-1]
	if last.Type != api.EventError || last.Error.Code != "canceled" {
		t.Fatalf("last event = %+v", last)
	}
	ops.Wait()
	if _, err := fk.Get(context.Background(), "k1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatal("canceled pull published a kernel")
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if fk.staged["k1"] {
		t.Fatal("the cancel never reached the pull's context: what it staged is still there")
	}
}

func TestConcurrentRequests(t *testing.T) {
	srv, _, _ := newTestServer(t)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path := []string{"/v1/status", "/v1/kernels", "/v1/version", "/v1/catalog/kernels"}[i%4]
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("%s: %d", path, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestAuditNamesThePeer: every request, reads included, leaves one log
// line with who sent it (as the kernel saw the socket's peer), what it was
// about, and how it ended: for a streamed operation, its real outcome,
// not the 200 its stream began with.
func TestAuditNamesThePeer(t *testing.T) {
	var logBuf testkit.SyncBuffer
	fk := &fakeKernels{kernels: map[string]api.Kernel{}}
	s := New(Deps{Kernels: fk, Operations: operation.NewRegistry(context.Background()), Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), ConnContext: peer.ConnContext}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	do := func(method, path, body string) {
		req, _ := http.NewRequest(method, "http://banger"+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/v1/kernels", "")
	do("GET", "/v1/kernels/nope", "")
	do("POST", "/v1/kernels/x/import", `{"name":"x"}`)
	do("POST", "/v1/kernels/x/import", `{"deb":"u1"}`)
	do("POST", "/v1/kernels/bad/import", `{"deb":"u1"}`)
	var audit []string
	for _, l := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		if strings.Contains(l, "msg=audit") {
			audit = append(audit, l)
		}
	}
	want := []string{
		"method=GET path=/v1/kernels status=200 ",
		"method=GET path=/v1/kernels/nope status=404 ",
		"method=POST path=/v1/kernels/x/import status=400 ",
		"method=POST path=/v1/kernels/x/import status=200 ",
		"method=POST path=/v1/kernels/bad/import status=200 ",
	}
	wantMore := []string{"object=kernel", "object=kernel/nope", "object=kernel/x", "object=kernel/x outcome=done", "object=kernel/bad outcome=failed"}
	who := fmt.Sprintf("uid=%d gid=%d pid=%d", os.Getuid(), os.Getgid(), os.Getpid())
	if len(audit) != len(want) {
		t.Fatalf("audit lines:\n%s\nwant %d", strings.Join(audit, "\n"), len(want))
	}
	for i, l := range audit {
		ok := strings.Contains(l, want[i]) && strings.Contains(l, who)
		for _, w := range strings.Fields(wantMore[i]) {
			ok = ok && strings.Contains(l, w+" ")
		}
		if !ok {
			t.Errorf("audit line %d:\n%s\nwant %q, %q and %q", i, l, want[i], wantMore[i], who)
		}
	}
}
