//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

// The "internet" of the bridge test: three web servers by name, in the
// outside namespace, and the DNS server that knows them.
// lanAddr is a second address of outside's on the link it shares with
// host: a server on the host's LAN.
const lanAddr = "198.18.0.3"

// rebinding are names whose DNS answers the host's own, loopback and
// link-local addresses: what a name under an allow list must not open.
var rebinding = map[string]string{"loop.test.": "127.0.0.1", "meta.test.": metadataAddr, "host.test.": hostAddr}

var zone = map[string]string{"a.test.": "203.0.113.10", "b.test.": "203.0.113.20", "c.test.": "203.0.113.30"}

const (
	bridgeGW = "10.213.0.1"
	webPort  = 8080
	udpecho  = "udpecho"
)

// hostNetState is what the suite must leave as it found on the host
// itself: its links, routes and nftables ruleset.
func hostNetState(t *testing.T) string {
	var b strings.Builder
	for _, args := range [][]string{{"ip", "-o", "link", "show"}, {"ip", "route", "show", "table", "all"}, {"nft", "list", "ruleset"}} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		// Counters move; names, flags and routes must not.
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.Index(l, " qlen"); i > 0 {
				l = l[:i]
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// serveDNS answers zone's A records on addr (UDP) inside ns; other names
// are NXDOMAIN. asked counts the questions it was asked about a name.
func serveDNS(t *testing.T, ns, addr string) (asked func(name string) int) {
	t.Helper()
	names := map[string]string{}
	for _, m := range []map[string]string{zone, rebinding} {
		for n, ip := range m {
			names[n] = ip
		}
	}
	return serveZone(t, ns, addr, names)
}

// serveZone serves A records of names (FQDN, lower case, final dot) on
// addr in namespace ns, NXDOMAIN for the rest.
func serveZone(t *testing.T, ns, addr string, names map[string]string) (asked func(name string) int) {
	t.Helper()
	var pc net.PacketConn
	inNetns(t, ns, func() {
		var err error
		if pc, err = net.ListenPacket("udp4", addr); err != nil {
			t.Errorf("dns on %s: %v", addr, err)
		}
	})
	if pc == nil {
		t.FailNow()
	}
	var mu sync.Mutex
	count := map[string]int{}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		mu.Lock()
		count[strings.ToLower(q.Name)]++
		mu.Unlock()
		ip, ok := names[strings.ToLower(q.Name)]
		switch {
		case !ok:
			m.SetRcode(r, dns.RcodeNameError)
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", q.Name, ip))
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return count[name]
	}
}

// udpIn sends msg to addr from inside ns and returns the answer.
func udpIn(t *testing.T, ns, addr, msg string) (string, error) {
	var out string
	var err error
	inNetns(t, ns, func() {
		var c net.Conn
		if c, err = net.Dial("udp4", addr); err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		// The server may still be starting: the guest refuses (ICMP) until
		// it binds, and a datagram may be lost.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			c.Write([]byte(msg))
			c.SetReadDeadline(time.Now().Add(time.Second))
			var n int
			if n, err = c.Read(buf); err == nil {
				out = string(buf[:n])
				return
			}
		}
	})
	return out, err
}

// inNS runs a command inside ns and returns its output.
func inNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// taps names the taps on banger's bridge in ns.
func taps(t *testing.T, ns string) []string {
	var out []string
	for _, l := range strings.Split(inNS(t, ns, "ip", "-o", "link", "show", "master", "banger0"), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			out = append(out, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	slices.Sort(out)
	return out
}

// leases reads the daemon's leases from its store.
func (e *env) leases() map[string]string {
	e.t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(e.stateDir, "banger.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	ls, err := st.Leases(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range ls {
		out[l.VM] = l.IP.String()
	}
	return out
}

// buildUDPEcho builds the guest's UDP server.
func buildUDPEcho(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), udpecho)
	b := exec.Command("go", "build", "-o", bin, "./testdata/udpecho")
	b.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("build udpecho: %v\n%s", err, out)
	}
	return bin
}

// TestBridgeNetwork runs bridge mode for real, all of it inside two
// network namespaces the test makes: "host", where the daemon, its
// bridge, taps and nftables tables live, and "outside", the internet,
// with web servers at a.test, b.test and c.test and the DNS server that
// names them. The host's own links, routes and ruleset are compared
// before and after.
func TestBridgeNetwork(t *testing.T) {
	testkit.NeedRoot(t, "bridge mode and network namespaces")
	testkit.NeedTools(t, "iproute2", "ip")
	testkit.NeedTools(t, "nftables", "nft")
	before := hostNetState(t)
	t.Cleanup(func() {
		// Registered first, so it runs last: after the namespaces went.
		if after := hostNetState(t); after != before {
			t.Errorf("the host's own network changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	e, base := netEnv(t)
	echo := buildUDPEcho(t)
	host, outside := hostAndOutside(t, "bgb", "bgi")
	for name, ip := range zone {
		ipCmd(t, "-n", outside, "addr", "add", ip+"/32", "dev", "lo")
		serveIn(t, outside, fmt.Sprintf("%s:%d", ip, webPort), strings.TrimSuffix(name, "."))
	}
	asked := serveDNS(t, outside, outsideAddr+":53")
	// The outside's DNS server is on the host's LAN: guest_lan opens it
	// (the spoofing check below sends to it), and nothing else there.
	ipCmd(t, "-n", outside, "addr", "add", lanAddr+"/24", "dev", "bgv1")
	lanWeb := serveIn(t, outside, lanAddr+":0", "lan")
	ipCmd(t, "-n", outside, "addr", "add", metadataAddr+"/32", "dev", "lo")
	ipCmd(t, "-n", host, "route", "add", metadataAddr+"/32", "dev", "bgv0")
	metadataWeb := serveIn(t, outside, metadataAddr+":0", "metadata")
	if err := os.WriteFile(e.config, []byte(base+"dns_upstream = \""+outsideAddr+"\"\nguest_lan = [\""+outsideAddr+"/32\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.netns = host
	e.start()
	run := func(name string, flags ...string) api.VM {
		e.t.Helper()
		e.mustBanger(append(append([]string{"vm", "run", "--name", name, "--image", "busybox-1", "--net", "bridge"}, flags...), "--", "true")...)
		return e.vm(name)
	}
	url := func(host string) string { return fmt.Sprintf("http://%s:%d/", host, webPort) }

	t.Run("two VMs reach each other and the bridge; published TCP and UDP ports answer; rm leaves nothing", func(t *testing.T) {
		defer e.use(t)()
		v1 := run("b1", "-p", "18080:8000", "-p", "0.0.0.0:18081:8000", "-p", "15353:5353/udp")
		v2 := run("b2")
		subnet := netip.MustParsePrefix("10.213.0.0/24")
		for _, v := range []api.VM{v1, v2} {
			a, err := netip.ParseAddr(v.IP)
			if v.Network != api.NetBridge || err != nil || !subnet.Contains(a) || v.IP == bridgeGW || v.SSHPort != 0 {
				t.Fatalf("vm %s: network %q, ip %q, ssh port %d; want bridge, an address of %s, no forward", v.Name, v.Network, v.IP, v.SSHPort, subnet)
			}
		}
		if v1.IP == v2.IP {
			t.Fatalf("both VMs have %s", v1.IP)
		}
		if got := taps(t, host); len(got) != 2 || !strings.HasPrefix(got[0], "bg-") {
			t.Fatalf("taps on banger0: %v, want two bg-*", got)
		}
		e.mustBanger("vm", "exec", "b2", "--", "busybox", "ping", "-c", "1", "-W", "5", v1.IP)
		e.mustBanger("vm", "exec", "b1", "--", "busybox", "ping", "-c", "1", "-W", "5", bridgeGW)
		if rc := e.mustBanger("vm", "exec", "b1", "--", "cat", "/etc/resolv.conf"); rc != "nameserver "+bridgeGW+"\n" {
			t.Errorf("guest resolv.conf %q, want banger's forwarder", rc)
		}
		// The outside is reached through NAT.
		if body, ok := e.guestGet("b1", url("a.test")); !ok || body != "reached a.test" {
			t.Errorf("open egress: GET a.test: ok=%v %q", ok, body)
		}
		// TCP, published on 127.0.0.1 and on every address.
		e.mustBanger("vm", "exec", "b1", "--", "sh", "-c", "echo published > /root/index.html && busybox httpd -p 8000 -h /root")
		for _, at := range []struct{ ns, addr string }{{host, "127.0.0.1:18080"}, {host, hostAddr + ":18081"}, {outside, hostAddr + ":18081"}} {
			if body, err := getIn(t, at.ns, at.addr, "/index.html"); err != nil || !strings.HasSuffix(body, "published\n") {
				t.Errorf("published port at %s from %s: %v %q", at.addr, at.ns, err, body)
			}
		}
		if _, err := getIn(t, outside, hostAddr+":18080", "/index.html"); err == nil {
			t.Errorf("-p 18080:8000 answers from outside: it is published on 127.0.0.1 only")
		}
		// UDP.
		e.mustBanger("vm", "cp", echo, "b1:/bin/"+udpecho)
		e.mustBanger("vm", "exec", "b1", "--", "sh", "-c", "busybox setsid /bin/"+udpecho+" 5353 </dev/null >/dev/null 2>&1 &")
		if got, err := udpIn(t, host, "127.0.0.1:15353", "ping"); err != nil || got != "echo: ping" {
			t.Errorf("published UDP port: %q, %v", got, err)
		}
		// A guest reaches nothing of the host's but DNS and a ping.
		hostWeb := serveIn(t, host, "0.0.0.0:0", "host")
		for _, a := range []string{bridgeGW, hostAddr} {
			if body, ok := e.guestGet("b2", fmt.Sprintf("http://%s:%d/", a, hostWeb)); ok {
				t.Errorf("guest reached the host's own server at %s: %q", a, body)
			}
		}
		// Nor the host's LAN, nor a metadata service on a link-local address.
		for _, u := range []string{fmt.Sprintf("http://%s:%d/", lanAddr, lanWeb), fmt.Sprintf("http://%s:%d/", metadataAddr, metadataWeb)} {
			if body, ok := e.guestGet("b2", u); ok {
				t.Errorf("guest reached %s: %q", u, body)
			}
		}
		e.mustBanger("vm", "rm", "-f", "b1")
		if got := taps(t, host); len(got) != 1 {
			t.Errorf("taps after vm rm b1: %v, want b2's only", got)
		}
		if ls := e.leases(); ls["b1"] != "" || ls["b2"] != v2.IP {
			t.Errorf("leases after vm rm b1: %v", ls)
		}
		if rules := inNS(t, host, "nft", "list", "ruleset"); strings.Contains(rules, v1.IP) || !strings.Contains(rules, v2.IP) {
			t.Errorf("b1's rules outlived it, or b2's are gone:\n%s", rules)
		}
		if _, err := getIn(t, host, "127.0.0.1:18080", "/index.html"); err == nil {
			t.Errorf("b1's published port still answers after vm rm")
		}
	})

	t.Run("guests of one owner reach each other; another owner's reach neither", func(t *testing.T) {
		defer e.use(t)()
		// Two users of the daemon, reaching its socket (made open to them
		// here, as the banger group would) from outside the namespace.
		for d := e.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		os.Chmod(e.socket, 0o666)
		alice := makeAccount(t, e.dir, "bna", "", 0)
		bob := makeAccount(t, e.dir, "bnb", "", 0)
		for _, o := range []struct {
			who  *account
			name string
		}{{alice, "o-a1"}, {alice, "o-a2"}, {bob, "o-b1"}} {
			e.mustBangerAs(o.who, "", "vm", "create", "--name", o.name, "--image", "busybox-1", "--net", "bridge", "--no-workdir")
			e.mustBangerAs(o.who, "", "vm", "start", o.name)
		}
		a1, a2, b1 := e.vm("o-a1"), e.vm("o-a2"), e.vm("o-b1")
		if a1.Owner != uint32(alice.uid) || b1.Owner != uint32(bob.uid) {
			t.Fatalf("owners: %d, %d", a1.Owner, b1.Owner)
		}
		// Each runs commands in its own VMs: nobody else, root included,
		// has a key to them.
		owner := map[string]*account{"o-a1": alice, "o-a2": alice, "o-b1": bob}
		in := func(vm, script string) string {
			t.Helper()
			return e.mustBangerAs(owner[vm], "", "vm", "exec", vm, "--", "sh", "-c", script)
		}
		ping := func(from, to string) bool {
			_, _, code := e.bangerAs(owner[from], "", "vm", "exec", from, "--", "busybox", "ping", "-c", "1", "-W", "3", to)
			return code == 0
		}
		if !ping("o-a2", a1.IP) || !ping("o-a1", a2.IP) {
			t.Errorf("alice's VMs do not reach each other")
		}
		if !ping("o-b1", bridgeGW) {
			t.Fatalf("bob's VM does not reach the bridge: the checks below would prove nothing")
		}
		for _, p := range [][2]string{{"o-b1", a1.IP}, {"o-b1", a2.IP}, {"o-a1", b1.IP}} {
			if ping(p[0], p[1]) {
				t.Errorf("%s reaches %s, a guest of another owner", p[0], p[1])
			}
		}
		// Nor over TCP, directly or through the gateway (the host refuses
		// it), while alice's other VM is served.
		in("o-a1", "echo alices-page > /root/index.html && busybox httpd -p 8000 -h /root")
		get := "busybox timeout 5 busybox wget -q -O - http://" + a1.IP + ":8000/ 2>&1; true"
		if out := in("o-a2", get); !strings.Contains(out, "alices-page") {
			t.Errorf("alice's VM does not get her page: %q", out)
		}
		if out := in("o-b1", get); strings.Contains(out, "alices-page") {
			t.Errorf("bob's VM got alice's page directly")
		}
		if out := in("o-b1", "busybox ip route add "+a1.IP+"/32 via "+bridgeGW+" && "+get); strings.Contains(out, "alices-page") || !strings.Contains(out, "refused") {
			t.Errorf("bob's VM through the gateway to alice's: %q; want connection refused", out)
		}
		t.Cleanup(func() {
			for _, n := range []string{"o-a1", "o-a2", "o-b1"} {
				e.banger("vm", "rm", "-f", n)
			}
		})
	})

	t.Run("a start that fails half-way leaves no tap, rule or lease", func(t *testing.T) {
		defer e.use(t)()
		tapsBefore, leasesBefore := taps(t, host), e.leases()
		rulesBefore := inNS(t, host, "nft", "list", "ruleset")
		// The VMM starts, the tap and rules are made, the guest is never
		// ready in time.
		_, errOut, code := e.banger("vm", "run", "--name", "bad", "--image", "busybox-1", "--net", "bridge", "-p", "18090:80", "--timeout", "1s", "--", "true")
		if code == 0 {
			t.Fatalf("vm run with a 1s ready timeout succeeded")
		}
		if !strings.Contains(errOut, "bridge (10.213.0.") {
			t.Errorf("the failed start never reached the bridge (so it proves nothing): %s", errOut)
		}
		if got := taps(t, host); !slices.Equal(got, tapsBefore) {
			t.Errorf("taps %v, before %v", got, tapsBefore)
		}
		if got := e.leases(); len(got) != len(leasesBefore) || got["bad"] != "" {
			t.Errorf("leases %v, before %v", got, leasesBefore)
		}
		if got := inNS(t, host, "nft", "list", "ruleset"); got != rulesBefore {
			t.Errorf("rules changed:\n%s\nbefore:\n%s", got, rulesBefore)
		}
	})

	t.Run("daemon SIGKILL with three VMs: a restart reconciles leases, taps and rules", func(t *testing.T) {
		defer e.use(t)()
		run("b3", "-p", "18083:8000")
		run("b4")
		e.mustBanger("vm", "exec", "b3", "--", "sh", "-c", "echo b3 > /root/index.html && busybox httpd -p 8000 -h /root")
		leasesBefore, tapsBefore := e.leases(), taps(t, host)
		if len(leasesBefore) != 3 || len(tapsBefore) != 3 {
			t.Fatalf("leases %v, taps %v; want b2, b3, b4's", leasesBefore, tapsBefore)
		}
		e.kill()
		// Made by hand under banger's names while the daemon was away:
		// an orphan tap, a rule in banger's table; and lost: banger's
		// bridge table, and the bridge itself (its taps fall off it).
		inNS(t, host, "ip", "tuntap", "add", "bg-0rphan", "mode", "tap")
		inNS(t, host, "nft", "add", "rule", "ip", "banger", "forward", "ip", "daddr", "192.0.2.99", "accept")
		inNS(t, host, "nft", "delete", "table", "bridge", "banger")
		inNS(t, host, "ip", "link", "del", "banger0")
		e.start()
		if got := taps(t, host); !slices.Equal(got, tapsBefore) {
			t.Errorf("taps after the restart %v, want %v", got, tapsBefore)
		}
		if out := inNS(t, host, "ip", "-o", "link", "show"); strings.Contains(out, "bg-0rphan") {
			t.Errorf("the orphan tap survived the restart")
		}
		rules := inNS(t, host, "nft", "list", "ruleset")
		if strings.Contains(rules, "192.0.2.99") || !strings.Contains(rules, "table bridge banger") {
			t.Errorf("after the restart, the orphan rule is there or the bridge table is not:\n%s", rules)
		}
		if got := e.leases(); !maps.Equal(got, leasesBefore) {
			t.Errorf("leases after the restart %v, want %v", got, leasesBefore)
		}
		for _, vm := range []string{"b2", "b3", "b4"} {
			if v := e.vm(vm); v.State != api.VMRunning || v.IP != leasesBefore[vm] {
				t.Errorf("vm %s after the restart: %s at %s", vm, v.State, v.IP)
			}
		}
		e.mustBanger("vm", "exec", "b4", "--", "busybox", "ping", "-c", "1", "-W", "5", leasesBefore["b3"])
		if body, err := getIn(t, host, "127.0.0.1:18083", "/index.html"); err != nil || !strings.HasSuffix(body, "b3\n") {
			t.Errorf("b3's published port after the restart: %v %q", err, body)
		}
		e.mustBanger("vm", "rm", "-f", "b2", "b3", "b4")
		if got := taps(t, host); len(got) != 0 {
			t.Errorf("taps after every vm rm: %v", got)
		}
	})

	t.Run("egress: deny, allow by name and address, learn, from", func(t *testing.T) {
		defer e.use(t)()
		askedBefore := asked("a.test.")
		run("deny", "--egress", "deny")
		for _, u := range []string{url("a.test"), url(zone["a.test."])} {
			if body, ok := e.guestGet("deny", u); ok {
				t.Errorf("--egress deny reached %s: %q", u, body)
			}
		}
		if asked("a.test.") != askedBefore {
			t.Errorf("a denied lookup reached the upstream DNS server")
		}

		run("allow", "--egress", "allow=a.test")
		if body, ok := e.guestGet("allow", url("a.test")); !ok || body != "reached a.test" {
			t.Errorf("allow=a.test: GET a.test: ok=%v %q", ok, body)
		}
		if out := e.mustBanger("vm", "exec", "allow", "--", "sh", "-c", "busybox nslookup b.test 2>&1; true"); !strings.Contains(out, "NXDOMAIN") {
			t.Errorf("allow=a.test: b.test is not NXDOMAIN:\n%s", out)
		}
		if body, ok := e.guestGet("allow", url(zone["b.test."])); ok {
			t.Errorf("allow=a.test reached b.test by its address: %q", body)
		}

		learner := run("learner", "--egress", "learn")
		// A guest cannot speak as another: deny, sending from learner's
		// address (which may go anywhere), straight to the outside's DNS
		// server, gets nothing there.
		spoof := fmt.Sprintf("busybox ip addr add %[1]s/32 dev eth0 && busybox ip route add %[2]s/32 via %[3]s src %[1]s && "+
			"busybox timeout 5 busybox nslookup spoof.test %[2]s; busybox ip route del %[2]s/32; busybox ip addr del %[1]s/32 dev eth0; true", learner.IP, outsideAddr, bridgeGW)
		e.mustBanger("vm", "exec", "deny", "--", "sh", "-c", spoof)
		if n := asked("spoof.test."); n != 0 {
			t.Errorf("a guest reached the outside from another guest's address (%d questions)", n)
		}
		for _, h := range []string{"a.test", "b.test"} {
			if body, ok := e.guestGet("learner", url(h)); !ok || body != "reached "+h {
				t.Errorf("learn: GET %s: ok=%v %q", h, ok, body)
			}
		}
		var eg api.Egress
		if err := json.Unmarshal([]byte(e.mustBanger("vm", "egress", "learner", "-o", "json")), &eg); err != nil {
			t.Fatal(err)
		}
		learned := map[string]string{}
		for _, r := range eg.Resolved {
			learned[r.Name] = r.Addr
		}
		if eg.Policy != "learn" || learned["a.test"] != zone["a.test."] || learned["b.test"] != zone["b.test."] {
			t.Errorf("vm egress learner: %+v", eg)
		}
		if out := e.mustBanger("vm", "egress", "learner"); !strings.Contains(out, "a.test") || !strings.Contains(out, zone["b.test."]) {
			t.Errorf("vm egress table:\n%s", out)
		}

		v := run("follower", "--egress", "from=learner")
		if v.Egress != "allow=a.test,b.test" {
			t.Errorf("--egress from=learner gave %q", v.Egress)
		}
		if body, ok := e.guestGet("follower", url("b.test")); !ok || body != "reached b.test" {
			t.Errorf("from=learner: GET b.test: ok=%v %q", ok, body)
		}
		if body, ok := e.guestGet("follower", url(zone["c.test."])); ok {
			t.Errorf("from=learner reached c.test, which learner never looked up: %q", body)
		}
		// A policy holds in bridge and user mode (TestGuestNetworkBoundary);
		// a VM that reaches nothing has none to hold.
		if _, errOut, code := e.banger("vm", "create", "--name", "u", "--image", "busybox-1", "--net", "none", "--egress", "deny"); code == 0 || !strings.Contains(errOut, "reaches nothing") {
			t.Errorf("--egress deny under --net none: exit %d %s", code, errOut)
		}
		e.mustBanger("vm", "rm", "-f", "deny", "allow", "learner", "follower")
	})
	if !t.Failed() {
		e.term()
		if out := inNS(t, host, "ip", "-o", "link", "show"); strings.Contains(out, "bg-") {
			t.Errorf("taps left after every VM went: %s", out)
		}
	}
}
