package vm

import (
	"github.com/banger-dev/banger/internal/service/vm/vmwork"
)

// contents is the vmwork service over s, wired as the daemon wires it;
// gd reads guests' disks.
func contents(s *Service, gd vmwork.GuestDisks) *vmwork.Service {
	var work vmwork.WorkExport
	if w, ok := s.d.Work.(vmwork.WorkExport); ok {
		work = w
	}
	return vmwork.New(vmwork.Deps{
		VMs: s, Store: s.d.Store, Work: work, GuestDisks: gd, MaxPromoteEntries: 1000,
		Images: s.d.Images, Driver: s.d.Driver, Runner: s.d.Runner, Layout: s.d.Layout, Key: s.d.Key,
		DiskBytes: s.d.Defaults.DiskBytes, Log: s.d.Log,
	})
}
