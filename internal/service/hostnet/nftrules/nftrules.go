// Package nftrules builds banger's nftables tables as data: bridge
// mode's (NAT out, published ports, each guest's egress, owners kept
// apart, each tap speaking only as its guest) and the guard that keeps
// user-mode guests off the host. Building is a pure function of what
// runs, so that tests read the rules a host would get without a kernel;
// Write queues them on a connection, which the caller flushes.
package nftrules

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName names bridge mode's tables, one in the ip family (NAT,
// published ports, egress) and one in the bridge family (each tap may
// only speak as its own guest). Nothing of banger's is anywhere else, so
// dropping them undoes it all.
const TableName = "banger"

// GuardTable names the table that keeps user-mode guests off the host.
const GuardTable = "banger-guard"

// Egress is what a guest's policy asks of its rules: open and learn need
// none, deny refuses all, an allow list accepts its set's addresses.
type Egress int

const (
	EgressOpen Egress = iota
	EgressDeny
	EgressAllow
)

// offLimits are off-limits to guests whatever their network: link-local
// (a cloud's metadata service, which hands out credentials, lives
// there), loopback and multicast.
var offLimits = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
}

// Table is one of banger's tables, whole: a write replaces what the
// kernel has under its name.
type Table struct {
	Table  *nftables.Table
	Chains []*nftables.Chain
	Sets   []Set
	// Rules are in the order they are appended to their chains.
	Rules []*nftables.Rule
}

// Set is a named set and its elements.
type Set struct {
	*nftables.Set
	Elems []nftables.SetElement
}

// Write queues on c the replacement of each of ts: the table is added
// (a no-op when it exists), deleted and made anew in one netlink batch,
// so that the kernel switches from the old rules to the new at once when
// c flushes, and a rule made by hand in banger's table goes with it.
// Chains come first and sets before the rules that look them up; the
// sets of ts get their batch IDs here, and so do the lookups naming them.
func Write(c *nftables.Conn, ts ...Table) error {
	for _, t := range ts {
		c.AddTable(t.Table)
		c.DelTable(t.Table)
		c.AddTable(t.Table)
		for _, ch := range t.Chains {
			c.AddChain(ch)
		}
		ids := map[string]uint32{}
		for _, s := range t.Sets {
			if err := c.AddSet(s.Set, s.Elems); err != nil {
				return fmt.Errorf("set %s of table %s: %w", s.Name, t.Table.Name, err)
			}
			ids[s.Name] = s.ID
		}
		for _, r := range t.Rules {
			// The library allots a set its batch ID in AddSet; a lookup
			// names it by both, as nft does.
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok {
					l.SetID = ids[l.SetName]
				}
			}
			c.AddRule(r)
		}
	}
	return nil
}

// AllowSet is the set, in table (TableName or GuardTable), of the
// addresses the guest with id may reach under an allow list.
func AllowSet(table, id string) *nftables.Set {
	return &nftables.Set{Table: ipv4(table), Name: "allow-" + id, KeyType: nftables.TypeIPAddr}
}

// Element is an IPv4 address as a set holds it.
func Element(a netip.Addr) nftables.SetElement {
	b := a.As4()
	return nftables.SetElement{Key: b[:]}
}

func ipv4(name string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: name}
}

// builder gathers a table's chains, sets and rules as they are made.
type builder struct{ Table }

func newBuilder(t *nftables.Table) *builder { return &builder{Table{Table: t}} }

// chain adds a regular chain, one only a jump or goto reaches.
func (b *builder) chain(name string) *nftables.Chain {
	ch := &nftables.Chain{Name: name, Table: b.Table.Table}
	b.Chains = append(b.Chains, ch)
	return ch
}

// baseChain adds a chain on a hook, whose policy is accept: banger's
// rules refuse what they mean to, and leave the rest to the host's.
func (b *builder) baseChain(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	ch := &nftables.Chain{Name: name, Table: b.Table.Table, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept}
	b.Chains = append(b.Chains, ch)
	return ch
}

// set adds s, with the elements keys, to the table.
func (b *builder) set(s *nftables.Set, keys ...[]byte) *nftables.Set {
	s.Table = b.Table.Table
	var elems []nftables.SetElement
	for _, k := range keys {
		elems = append(elems, nftables.SetElement{Key: k})
	}
	b.Sets = append(b.Sets, Set{Set: s, Elems: elems})
	return s
}

// rule appends to ch a rule of parts' expressions, in order.
func (b *builder) rule(ch *nftables.Chain, parts ...[]expr.Any) {
	b.Rules = append(b.Rules, &nftables.Rule{Table: b.Table.Table, Chain: ch, Exprs: slices.Concat(parts...)})
}

// refuse appends rules that refuse what match matches from a guest: TCP
// with a reset, the rest with an ICMP "administratively prohibited", so
// that a program in the guest fails at once and says why, rather than
// hanging until it times out.
func (b *builder) refuse(ch *nftables.Chain, match ...[]expr.Any) {
	b.rule(ch, slices.Concat(match...), l4proto(unix.IPPROTO_TCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})
	b.rule(ch, slices.Concat(match...), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 13}})
}

// egress appends to ch a guest's policy for what match matches: deny
// refuses it; an allow list adds the guest's set (of the addresses its
// names opened, allowed), accepts what goes to one of them and refuses
// the rest; open appends accept when accept is set (bridge mode, whose
// forward chain refuses the rest) and nothing otherwise.
func (b *builder) egress(ch *nftables.Chain, match []expr.Any, e Egress, id string, allowed []netip.Addr, accept bool) {
	switch e {
	case EgressDeny:
		b.refuse(ch, match)
	case EgressAllow:
		var keys [][]byte
		for _, a := range sortedAddrs(allowed) {
			keys = append(keys, Element(a).Key)
		}
		set := b.set(AllowSet(b.Table.Table.Name, id), keys...)
		b.rule(ch, match, inSet(payload(expr.PayloadBaseNetworkHeader, 16, 4), set, true), verdict(expr.VerdictAccept))
		b.refuse(ch, match)
	default:
		if accept {
			b.rule(ch, match, verdict(expr.VerdictAccept))
		}
	}
}

// sortedAddrs is addrs sorted, so that the same guests make the same
// rules.
func sortedAddrs(addrs []netip.Addr) []netip.Addr {
	s := slices.Clone(addrs)
	slices.SortFunc(s, netip.Addr.Compare)
	return s
}
