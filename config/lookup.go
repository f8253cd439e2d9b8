package config

// defaultPoolName is the pool that gets queries no rule routes elsewhere.
const defaultPoolName = "default"

// Backend returns the backend called name and its pool, or nil, nil when
// there is none. Names are unique across pools, so the answer is
// unambiguous. The results point into c and must not be modified.
func (c *Config) Backend(name string) (*Backend, *Pool) {
	for _, pn := range c.PoolNames {
		p := c.Pools[pn]
		for i := range p.Backends {
			if p.Backends[i].Name == name {
				return &p.Backends[i], p
			}
		}
	}
	return nil, nil
}

// DefaultPool returns the pool for queries that no rule sends elsewhere:
// the pool named "default" if there is one, otherwise the first pool in
// the file. A loaded config always has at least one pool.
func (c *Config) DefaultPool() *Pool {
	if p, ok := c.Pools[defaultPoolName]; ok {
		return p
	}
	if len(c.PoolNames) == 0 {
		return nil
	}
	return c.Pools[c.PoolNames[0]]
}
