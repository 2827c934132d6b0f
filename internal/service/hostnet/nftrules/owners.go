package nftrules

import (
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// owner is one owner's attached guests: their taps (padded as an
// interface name is), MACs and addresses, as set elements.
type owner struct {
	uid             uint32
	taps, macs, ips [][]byte
}

// owners groups guests by owner, in the order of the owners' uids.
func owners(guests []Guest) []owner {
	by := map[uint32]*owner{}
	for _, g := range guests {
		o := by[g.Owner]
		if o == nil {
			o = &owner{uid: g.Owner}
			by[o.uid] = o
		}
		o.taps = append(o.taps, ifnameKey(g.Tap))
		o.macs = append(o.macs, g.MAC)
		o.ips = append(o.ips, Element(g.IP).Key)
	}
	var os []owner
	for _, uid := range slices.Sorted(maps.Keys(by)) {
		os = append(os, *by[uid])
	}
	return os
}

// ownerSets adds a named set per owner, "what-UID", of what keys picks
// of its guests; named, so that the rules of every pair of owners can
// share them. order is the keys' byte order as nft writes it (an
// ifname's is the host's, or nft lists the names as ""), nil for none.
func ownerSets(t *builder, os []owner, what string, typ nftables.SetDatatype, order binaryutil.ByteOrder, keys func(owner) [][]byte) map[uint32]*nftables.Set {
	sets := map[uint32]*nftables.Set{}
	for _, o := range os {
		sets[o.uid] = t.set(&nftables.Set{Name: fmt.Sprintf("%s-%d", what, o.uid), KeyType: typ, KeyByteOrder: order,
			Comment: fmt.Sprintf("%s of uid %d's guests", what, o.uid)}, keys(o)...)
	}
	return sets
}

// pairs calls f for every ordered pair of different owners.
func pairs(os []owner, f func(from, to owner)) {
	for _, from := range os {
		for _, to := range os {
			if from.uid != to.uid {
				f(from, to)
			}
		}
	}
}

// ownersApartRouted adds to fwd, for every pair of owners, the refusal
// of what one's guests send through the gateway to the other's.
func (b Bridge) ownersApartRouted(t *builder, fwd *nftables.Chain) {
	os := owners(b.Guests)
	if len(os) < 2 {
		return
	}
	addrs := ownerSets(t, os, "addrs", nftables.TypeIPAddr, nil, func(o owner) [][]byte { return o.ips })
	pairs(os, func(from, to owner) {
		t.refuse(fwd, b.fromBridge(), b.toBridge(),
			inSet(payload(expr.PayloadBaseNetworkHeader, 12, 4), addrs[from.uid], true),
			inSet(payload(expr.PayloadBaseNetworkHeader, 16, 4), addrs[to.uid], true))
	})
}

// ownersApartBridged adds to the bridge table, for every pair of
// owners, the drop of the frames one's taps send to the other's:
//
//   - in pre, a frame addressed to the other's MACs, before the bridge
//     forwards it;
//   - in fwd, a frame forwarded to the other's taps addressed to none of
//     their MACs: a broadcast (ARP's requests), a multicast, a unicast
//     the bridge floods. Its forward hook sees a flooded frame once per
//     port it goes out of, so a guest does not even learn another
//     owner's is there.
//
// The one frame from one owner's tap to another's let through is a
// frame to the gateway that br_netfilter, when the host has it, turned
// into one to the other's guest, readdressed, on the bridge: a published
// port's connection (its DNAT), which the ip table accepts. What the
// bridge itself (the host) sends or receives goes through its output
// and input hooks, not these: the gateway and DNS are everyone's.
func (b Bridge) ownersApartBridged(t *builder, pre, fwd *nftables.Chain) {
	os := owners(b.Guests)
	if len(os) < 2 {
		return
	}
	taps := ownerSets(t, os, "taps", nftables.TypeIFName, binaryutil.NativeEndian, func(o owner) [][]byte { return o.taps })
	macs := ownerSets(t, os, "macs", nftables.TypeEtherAddr, nil, func(o owner) [][]byte { return o.macs })
	daddr := payload(expr.PayloadBaseLLHeader, 0, 6)
	pairs(os, func(from, to owner) {
		t.rule(pre, inSet(meta(expr.MetaKeyIIFNAME), taps[from.uid], true), inSet(daddr, macs[to.uid], true), verdict(expr.VerdictDrop))
		t.rule(fwd, inSet(meta(expr.MetaKeyIIFNAME), taps[from.uid], true), inSet(meta(expr.MetaKeyOIFNAME), taps[to.uid], true),
			inSet(daddr, macs[to.uid], false), verdict(expr.VerdictDrop))
	})
}
