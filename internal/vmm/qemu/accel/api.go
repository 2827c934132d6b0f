package accel

import (
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// API is the choice as the API shows it; err is the mode's refusal, if any.
func (c Choice) API(err error) api.Accel {
	out := api.Accel{
		Summary: c.String(), Name: c.Name, CPU: c.CPU, Reason: c.Reason, Mode: string(c.Mode), KVM: c.KVM,
		ProbedAt: c.ProbedAt, Cached: c.Cached, Probes: c.Probes,
	}
	if c.ProbeTook > 0 {
		b, _ := c.ProbeTook.MarshalText()
		out.ProbeTook = string(b)
	}
	if err != nil {
		out.Error = errdefs.Message(err)
	}
	return out
}

// Status is the selector's choice as the API shows it, without waiting:
// "probing" while the start-up probe runs.
func (s *Selector) Status() api.Accel {
	c, err, ok := s.Current()
	if !ok {
		return api.Accel{Summary: "probing", Mode: string(s.Mode)}
	}
	return c.API(err)
}
