package agent

import "testing"

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline("console=ttyS0 root=/dev/vda rw virtio_blk.queue_depth=64 virtio-net.napi_tx=1 virtio_blk.foo=bar quiet\n")
	if c.Params["root"] != "/dev/vda" || c.Params["console"] != "ttyS0" {
		t.Fatalf("params = %v", c.Params)
	}
	if _, ok := c.Params["rw"]; !ok {
		t.Fatal("flag without value lost")
	}
	if c.ModParams["virtio_blk"] != "queue_depth=64 foo=bar" || c.ModParams["virtio_net"] != "napi_tx=1" {
		t.Fatalf("module params = %v", c.ModParams)
	}
}
