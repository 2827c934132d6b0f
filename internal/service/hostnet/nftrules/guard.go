package nftrules

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Guard is what the guard's table is made of. The sockets of a
// user-mode network's process (passt, or qemu's own slirp) run as the
// VM's uid, from banger's VMM range, so the table filters what those
// uids send, and nothing of anyone else's.
type Guard struct {
	// UIDFrom and UIDCount are the VMMs' uids.
	UIDFrom, UIDCount uint32
	// Connected are the host's directly connected networks, refused but
	// for Open (guest_lan).
	Connected, Open []netip.Prefix
	// Resolvers are the host's DNS servers, which passt forwards a
	// guest's questions to.
	Resolvers []netip.Addr
	// Users are the user-mode VMs under an egress policy, in the order
	// their rules are written.
	Users []User
}

// User is a running user-mode VM under an egress policy.
type User struct {
	VM, ID string
	// UID is its VMM's (and passt's); DNSPort its DNS listener's on
	// 127.0.0.1.
	UID     uint32
	DNSPort uint16
	Egress  Egress
	// Allowed are the addresses an allow list's names opened.
	Allowed []netip.Addr
}

// guardChains are the guard table's chains.
type guardChains struct {
	// out and nat are on the output hook; guests and policy are jumped
	// to.
	out, nat, guests, policy *nftables.Chain
}

// Table is the guard's table: the host's own addresses (every one: the
// kernel's fib says which), link-local and loopback ranges and the
// connected networks are refused but for Open; replies to connections
// made to the guest (its SSH and published ports) pass, and so does DNS
// to the host's resolvers. Each user's lookups go to its own DNS
// listener, and what it sends is held to its policy.
func (g Guard) Table() Table {
	t := newBuilder(ipv4(GuardTable))
	c := guardChains{
		out:    t.baseChain("output", nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriorityFilter),
		guests: t.chain("guests"),
		policy: t.chain("policy"),
		nat:    t.baseChain("dns", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
	}
	// Only the VMMs' uids.
	t.rule(c.out, skuidIn(g.UIDFrom, g.UIDFrom+g.UIDCount-1), jump(c.guests))
	g.listeners(t, c)
	g.offHost(t, c)
	// Each guest's egress policy, past what no guest reaches.
	for _, u := range g.Users {
		t.egress(c.policy, skuid(u.UID, true), u.Egress, u.ID, u.Allowed, false)
	}
	return t.Table
}

// listeners keeps each user's DNS listener its own, and sends its
// lookups there.
func (g Guard) listeners(t *builder, c guardChains) {
	lo := netip.MustParseAddr("127.0.0.1")
	// A VM's DNS listener answers its VM only: a question from any other
	// socket of the host (another user's, another VM's passt) would be
	// taken for the VM's, and under learn would write names into its
	// record, which from= then turns into an allow list.
	for _, u := range g.Users {
		for _, udp := range []bool{true, false} {
			t.refuse(c.out, addr(16, lo), l4(udp), dport(int(u.DNSPort)), skuid(u.UID, false))
		}
	}
	// Replies to what reached the guest (its SSH, its published ports).
	t.rule(c.guests, established(), verdict(expr.VerdictAccept))
	// A guest under a policy asks banger's forwarder, whatever server
	// it (or passt for it) sends its questions to.
	for _, u := range g.Users {
		for _, udp := range []bool{true, false} {
			t.rule(c.nat, skuid(u.UID, true), l4(udp), dport(53), natTo(lo, int(u.DNSPort)))
			t.rule(c.guests, skuid(u.UID, true), addr(16, lo), l4(udp), dport(int(u.DNSPort)), verdict(expr.VerdictAccept))
		}
	}
}

// offHost refuses the host and its networks to every guest, but DNS to
// its resolvers; guest_lan's networks go on to the policy (goto: no
// coming back to the refusals), as guest_lan lifts the LAN's ban, not a
// VM's policy.
func (g Guard) offHost(t *builder, c guardChains) {
	for _, a := range g.Resolvers {
		for _, udp := range []bool{true, false} {
			t.rule(c.guests, addr(16, a), l4(udp), dport(53), verdict(expr.VerdictAccept))
		}
	}
	for _, p := range g.Open {
		t.rule(c.guests, inPrefix(16, p), goTo(c.policy))
	}
	t.refuse(c.guests, fibLocal())
	for _, p := range slices.Concat(offLimits, g.Connected) {
		t.refuse(c.guests, inPrefix(16, p))
	}
	t.rule(c.guests, jump(c.policy))
}
