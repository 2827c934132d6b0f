package hostnet

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/banger-dev/banger/internal/service/hostnet/nftrules"
	"github.com/banger-dev/banger/internal/store"
)

// TableName names banger's tables, one in the ip family (NAT, published
// ports, egress) and one in the bridge family (each tap may only speak as
// its own guest). Nothing of banger's is anywhere else, so dropping them
// undoes it all.
const TableName = nftrules.TableName

// apply writes banger's tables for the attached guests.
func (s *Service) apply() error {
	connected, err := Connected(s.d.Config.Subnet.Masked())
	if err != nil {
		return err
	}
	return writeTables("write banger's nftables tables", s.bridgeRules(connected).Tables()...)
}

// bridgeRules is what banger's tables are made of for the attached
// guests, in the order of their names; connected are the host's
// directly connected networks.
func (s *Service) bridgeRules(connected []netip.Prefix) nftrules.Bridge {
	cfg := s.d.Config
	b := nftrules.Bridge{Name: cfg.Bridge, Gateway: cfg.Gateway(), Subnet: cfg.Subnet.Masked(), Connected: connected, Open: cfg.Open}
	for _, g := range s.guests {
		mac, _ := net.ParseMAC(g.lease.MAC)
		b.Guests = append(b.Guests, nftrules.Guest{VM: g.spec.VM, ID: g.spec.ID, Owner: g.spec.Owner, Tap: g.tap, MAC: mac,
			IP: g.lease.IP, Ports: g.spec.Ports, Egress: egressRules(g.spec.Egress), Allowed: slices.Collect(maps.Keys(g.allowed))})
	}
	slices.SortFunc(b.Guests, func(x, y nftrules.Guest) int { return strings.Compare(x.VM, y.VM) })
	return b
}

// egressRules is what a policy asks of the rules: learn's is open's,
// as it only records.
func egressRules(e Egress) nftrules.Egress {
	switch e.Mode {
	case EgressDeny:
		return nftrules.EgressDeny
	case EgressAllow:
		return nftrules.EgressAllow
	}
	return nftrules.EgressOpen
}

// batchBuffer is the netlink socket's buffer for banger's batches: the
// rules of a bridge with many guests of many owners are one batch larger
// than the default (sendmsg failed at about 40 guests, and the kernel's
// acknowledgements overflowed the read side, ENOBUFS, from about 15).
const batchBuffer = 16 << 20

// newConn is a netlink connection to nftables with room for a batch.
func newConn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
		if err := c.SetReadBuffer(batchBuffer); err != nil {
			return err
		}
		return c.SetWriteBuffer(batchBuffer)
	}))
}

// writeTables replaces ts in the kernel, in one batch; what says what
// failed.
func writeTables(what string, ts ...nftrules.Table) error {
	c, err := newConn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := nftrules.Write(c, ts...); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// openSet adds addrs to a guest's allow set in table and to allowed, at
// once in the kernel, at most store.MaxResolved addresses in all.
func openSet(table string, spec Spec, allowed map[netip.Addr]bool, addrs []netip.Addr) error {
	var elems []nftables.SetElement
	for _, a := range addrs {
		if !allowed[a] && len(allowed) >= store.MaxResolved {
			return fmt.Errorf("vm %s may reach %d addresses already, the most an allow list opens", spec.VM, len(allowed))
		}
		if !allowed[a] {
			allowed[a] = true
			elems = append(elems, nftrules.Element(a))
		}
	}
	if len(elems) == 0 {
		return nil
	}
	c, err := newConn()
	if err != nil {
		return err
	}
	if err := c.SetAddElements(nftrules.AllowSet(table, spec.ID), elems); err != nil {
		return err
	}
	return c.Flush()
}

// dropTables queues the removal of banger's tables, if there are any.
func dropTables(c *nftables.Conn) {
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyBridge} {
		t := &nftables.Table{Family: fam, Name: TableName}
		c.AddTable(t)
		c.DelTable(t)
	}
}
