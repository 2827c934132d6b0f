// Package vmsecret gives running VMs secrets that never enter them: the
// guest holds a placeholder, and a proxy of the daemon's (secretproxy),
// reached through the daemon's own SSH connection to the guest's agent
// (a port on the guest's loopback, forwarded back), puts the value in
// requests to the hosts it belongs to. Values live in the daemon's
// memory for the VM's current boot only; names, hosts and what was done
// with them are kept in the VM's directory (File).
package vmsecret

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/service/secretproxy"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// VMs is what the service needs of the VM service: the caller's VM,
// under its lock.
type VMs interface {
	LockedRecord(ctx context.Context, name string, p operation.Progress) (store.VM, func(), error)
	View(v store.VM) api.VM
	// Note adds to a VM's activity record.
	Note(ctx context.Context, vm string, ev api.ActivityEvent)
}

// Deps are what the service needs.
type Deps struct {
	VMs    VMs
	Key    ssh.Signer // the daemon's, which every guest accepts
	Layout layout.Layout
	// Dial reaches host:port for v's guest, under v's egress policy.
	Dial    func(ctx context.Context, v store.VM, host, port string) (net.Conn, error)
	RootCAs *x509.CertPool // verifies real servers (nil: the host's)
	Log     *slog.Logger
	// Record adds to a VM's activity record (nil: none is kept).
	Record func(vm string, ev api.ActivityEvent)
}

// Service holds the live proxies, one per VM given secrets.
type Service struct {
	d    Deps
	mu   sync.Mutex
	live map[string]*boot // by VM name
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d, live: map[string]*boot{}}
}

// boot is one VM boot's secrets: its proxy, the connection its guest
// reaches the proxy through, and the placeholders handed out.
type boot struct {
	vm      vmm.Process
	proxy   *secretproxy.Proxy
	client  *ssh.Client
	port    int
	secrets map[string]secretproxy.Secret
	rec     *record
	done    chan struct{}
	once    sync.Once
}

func (b *boot) close() {
	b.once.Do(func() {
		close(b.done)
		b.proxy.Close()
		b.client.Close()
	})
}

// Limits of a request.
const (
	maxSecrets     = 32
	maxValueBytes  = 16 << 10
	maxHostsEach   = 64
	guestProxyAddr = "127.0.0.1"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// reservedEnv are the variables the service sets itself.
var reservedEnv = []string{
	"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy",
	"SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS",
}

// Check validates a request, and returns it with hosts in lower case.
func Check(req api.SecretsRequest) (api.SecretsRequest, error) {
	bad := func(format string, a ...any) (api.SecretsRequest, error) {
		return req, fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalid)...)
	}
	if len(req.Secrets) == 0 {
		return bad("no secrets given")
	}
	if len(req.Secrets) > maxSecrets {
		return bad("%d secrets: at most %d", len(req.Secrets), maxSecrets)
	}
	seen := map[string]bool{}
	envs := map[string]string{}
	for i, g := range req.Secrets {
		if !nameRE.MatchString(g.Name) {
			return bad("secret %.40q: a name is lower-case letters, digits, '-' and '_', at most 32", g.Name)
		}
		if seen[g.Name] {
			return bad("secret %s given twice", g.Name)
		}
		seen[g.Name] = true
		if g.Value == "" || len(g.Value) > maxValueBytes || strings.ContainsAny(g.Value, "\r\n\x00") {
			return bad("secret %s: a value is 1 to %d bytes on one line", g.Name, maxValueBytes)
		}
		if len(g.Hosts) == 0 || len(g.Hosts) > maxHostsEach {
			return bad("secret %s: 1 to %d hosts", g.Name, maxHostsEach)
		}
		hosts := make([]string, 0, len(g.Hosts))
		for _, h := range g.Hosts {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if err := hostnet.CheckHost(h); err != nil {
				return bad("secret %s: %v", g.Name, err)
			}
			hosts = append(hosts, h)
		}
		req.Secrets[i].Hosts = hosts
		if g.Env == "" && g.File == "" {
			return bad("secret %s: say where the guest finds its placeholder (env or file)", g.Name)
		}
		if g.Env != "" {
			if !guestproto.EnvName(g.Env) || slices.Contains(reservedEnv, g.Env) {
				return bad("secret %s: env %q: not a variable name, or one banger sets", g.Name, g.Env)
			}
			if other, ok := envs[g.Env]; ok {
				return bad("secrets %s and %s both set $%s", other, g.Name, g.Env)
			}
			envs[g.Env] = g.Name
		}
		if g.File != "" {
			if _, err := guestproto.HomePath(g.File); err != nil {
				return bad("secret %s: %v", g.Name, err)
			}
		}
	}
	return req, nil
}

// Grant gives the running VM name the secrets in req: placeholders in
// its guest (variables, files), the proxy's CA in its trust store, and
// the proxy in its HTTP(S)_PROXY. A secret given again keeps its
// placeholder and takes the new value.
func (s *Service) Grant(ctx context.Context, name string, req api.SecretsRequest) (api.VM, error) {
	req, err := Check(req)
	if err != nil {
		return api.VM{}, err
	}
	v, unlock, err := s.d.VMs.LockedRecord(ctx, name, operation.Discard)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	if v.State != api.VMRunning {
		return api.VM{}, fmt.Errorf("vm %s is %s: secrets are given to a running VM: %w", name, v.State, errdefs.ErrConflict)
	}
	b, err := s.bootOf(ctx, v)
	if err != nil {
		return api.VM{}, err
	}
	msg := guestproto.AuthSync{User: "root", Files: map[string][]byte{}, Env: proxyEnv(b.port), Trust: b.proxy.CACertPEM()}
	var add []secretproxy.Secret
	s.mu.Lock()
	if b.secrets == nil {
		s.mu.Unlock()
		return api.VM{}, fmt.Errorf("vm %s stopped as it was given secrets: %w", name, errdefs.ErrConflict)
	}
	for _, g := range req.Secrets {
		sec, ok := b.secrets[g.Name]
		if !ok {
			ph, err := secretproxy.NewPlaceholder(g.Value)
			if err != nil {
				s.mu.Unlock()
				return api.VM{}, err
			}
			sec = secretproxy.Secret{Name: g.Name, Placeholder: ph}
		}
		sec.Value, sec.Hosts = g.Value, g.Hosts
		b.secrets[g.Name] = sec
		add = append(add, sec)
		if g.Env != "" {
			msg.Env[g.Env] = sec.Placeholder
		}
		if g.File != "" {
			msg.Files[g.File] = []byte(sec.Placeholder)
		}
	}
	s.mu.Unlock()
	b.proxy.Add(add...)
	if err := guestboot.Lend(b.client, msg); err != nil {
		return api.VM{}, fmt.Errorf("give vm %s its placeholders: %w", name, err)
	}
	b.rec.given(req.Secrets)
	var names []string
	for _, g := range req.Secrets {
		names = append(names, g.Name)
	}
	s.d.Log.Info("gave secrets", "vm", name, "secrets", names, "proxy_port", b.port)
	var bound []string
	for _, g := range req.Secrets {
		bound = append(bound, g.Name+" for "+strings.Join(g.Hosts, ","))
	}
	s.d.VMs.Note(ctx, name, api.ActivityEvent{Kind: api.ActFile, Action: "secrets", Names: names, Detail: "placeholders given: " + strings.Join(bound, "; ")})
	out := s.d.VMs.View(v)
	out.Secrets = s.View(name)
	return out, nil
}

// proxyEnv is what points a guest's tools at the proxy and its CA.
func proxyEnv(port int) map[string]string {
	proxy := "http://" + net.JoinHostPort(guestProxyAddr, strconv.Itoa(port))
	env := map[string]string{"NODE_EXTRA_CA_CERTS": guestproto.TrustCA}
	for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"} {
		env[k] = proxy
	}
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		env[k] = "localhost,127.0.0.1,::1"
	}
	for _, k := range []string{"SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO"} {
		env[k] = guestproto.TrustBundle
	}
	return env
}

// bootOf returns v's current boot's proxy, made (with its tunnel) on
// first use; a proxy of an earlier boot is dropped.
func (s *Service) bootOf(ctx context.Context, v store.VM) (*boot, error) {
	proc := vmm.Process{PID: v.PID, StartTime: v.PIDStart}
	s.mu.Lock()
	b := s.live[v.Name]
	s.mu.Unlock()
	if b != nil {
		if b.vm == proc {
			select {
			case <-b.done:
			default:
				return b, nil
			}
		}
		s.drop(v.Name, b)
	}
	b = &boot{vm: proc, secrets: map[string]secretproxy.Secret{}, rec: loadRecord(s.d.Layout.VM(v.Name)), done: make(chan struct{})}
	name := v.Name
	proxy, err := secretproxy.New(name, secretproxy.Config{
		Dial: func(ctx context.Context, host, port string) (net.Conn, error) {
			return s.d.Dial(ctx, v, host, port)
		},
		RootCAs: s.d.RootCAs,
		Record:  func(e secretproxy.Event) { s.note(name, b.rec, e) },
		Log:     s.d.Log.With("vm", name, "part", "secrets proxy"),
	})
	if err != nil {
		return nil, fmt.Errorf("make vm %s's secrets proxy: %w", name, err)
	}
	b.proxy = proxy
	if b.client, err = guestboot.Dial(ctx, v, s.d.Key); err != nil {
		proxy.Close()
		return nil, err
	}
	ln, err := b.client.Listen("tcp", guestProxyAddr+":0")
	if err != nil {
		b.client.Close()
		proxy.Close()
		return nil, fmt.Errorf("open the secrets proxy's port in vm %s: %w (an older agent? restart the VM)", name, err)
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	s.mu.Lock()
	s.live[name] = b
	s.mu.Unlock()
	go s.serve(name, b, ln)
	go s.watch(name, b)
	return b, nil
}

// serve hands the proxy each connection the guest opens to its port,
// until the connection to the agent ends (the guest stopped).
func (s *Service) serve(name string, b *boot, ln net.Listener) {
	defer s.drop(name, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.done
		cancel()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go b.proxy.ServeConn(ctx, c)
	}
}

// watch drops a boot whose VMM is gone: a killed VMM leaves a bridge
// guest's connection open for long, and its values must not outlive it.
func (s *Service) watch(name string, b *boot) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			if !b.vm.Alive() {
				s.drop(name, b)
				return
			}
		}
	}
}

func (s *Service) drop(name string, b *boot) {
	s.mu.Lock()
	if s.live[name] == b {
		delete(s.live, name)
	}
	b.secrets = nil // the values, for the collector
	s.mu.Unlock()
	b.close()
	b.rec.save()
}

// Forget drops what the daemon holds for VM name (it stopped, or is
// removed): its values and its proxy's CA mean nothing from then on.
func (s *Service) Forget(name string) {
	s.mu.Lock()
	b := s.live[name]
	s.mu.Unlock()
	if b != nil {
		s.drop(name, b)
		s.d.Log.Info("forgot secrets", "vm", name)
	}
}

// View is what VM name was given, and whether the values are held.
func (s *Service) View(name string) []api.VMSecret {
	s.mu.Lock()
	b := s.live[name]
	held := map[string]bool{}
	if b != nil {
		for n := range b.secrets {
			held[n] = true
		}
	}
	s.mu.Unlock()
	if b != nil {
		return b.rec.list(held)
	}
	return View(s.d.Layout.VM(name))
}

// note records e and logs it: a secret's first use, and the first
// attempt of each host and reason.
func (s *Service) note(vm string, r *record, e secretproxy.Event) {
	if s.d.Record != nil {
		s.d.Record(vm, api.ActivityEvent{Time: e.Time, Kind: api.ActSecret, Action: e.Kind, Via: api.ViaGuest,
			Secret: e.Secret, Host: e.Host, Method: e.Method, URL: e.Path, Detail: e.Why})
	}
	// The first of each kind per host only: a guest sending a placeholder
	// in a loop must not fill the daemon's log. The record counts them all.
	if !r.event(e) {
		return
	}
	if e.Kind != "use" {
		s.d.Log.Warn("secret placeholder sent where its value may not go", "vm", vm, "secret", e.Secret, "host", e.Host, "method", e.Method, "path", e.Path, "why", e.Why)
	} else {
		s.d.Log.Info("secret used", "vm", vm, "secret", e.Secret, "host", e.Host, "method", e.Method, "path", e.Path)
	}
}
