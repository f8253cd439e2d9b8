package proxy

import (
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

func newECSPolicy(c config.ECS) dnswire.ECSPolicy {
	return dnswire.ECSPolicy{Add: c.Add, Override: c.Override, V4: uint8(c.V4Prefix), V6: uint8(c.V6Prefix)}
}
