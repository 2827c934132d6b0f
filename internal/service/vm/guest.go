package vm

import (
	"context"
	"fmt"
	"time"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/service/vm/guestboot"
	"github.com/banger-dev/banger/internal/store"
)

// powerOff asks the guest agent, over SSH with the daemon's key, to power
// the guest off cleanly. It does not wait for the guest to go.
func (s *Service) powerOff(ctx context.Context, v store.VM) error {
	if v.SSHPort == 0 && v.IP == "" {
		return fmt.Errorf("no way to reach the guest agent")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := guestboot.Dial(cctx, v, s.d.Key)
	if err != nil {
		return err
	}
	defer client.Close()
	ok, _, err := client.SendRequest(guestproto.PowerOffRequest, true, nil)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the guest agent refused to power off (an older agent?)")
	}
	return nil
}
