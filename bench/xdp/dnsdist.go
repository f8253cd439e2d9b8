package main

// The dnsdist rows: dnsdist from Debian in the same server namespace, on
// the same VIP, in front of the same backend, answering the same query
// from its packet cache: the system the XDP answer cache has to beat.

import (
	"fmt"
	"os/exec"
)

// dnsdistConfig is dnsdist configured like hitConfig's anyfront without
// XDP: the sender's network in the ACL, one backend, a packet cache, and
// its web server on the admin port for /metrics.
func (l *lab) dnsdistConfig() string {
	return fmt.Sprintf(`setSecurityPollSuffix("")
setLocal("%s:53")
setACL({"127.0.0.0/8", "%s/24"})
newServer{address=%q, name="r1"}
pc = newPacketCache(1000)
getPool(""):setCache(pc)
webserver("127.0.0.1:%d")
setWebserverConfig({password="bench", apiKey="bench", acl="127.0.0.0/8", statsRequireAuthentication=false})
`, vip, senderAddr, backendAddr, adminPort)
}

// dnsdistCommand runs dnsdist with conf in the server's namespace, in the
// foreground, with nothing on the network but what conf says.
func (l *lab) dnsdistCommand(conf string) *exec.Cmd {
	return exec.Command("ip", "netns", "exec", l.server, "dnsdist", "--supervised", "--disable-syslog", "-C", conf)
}

// dnsdistHits is dnsdist's counter of answers from its packet cache.
const dnsdistHits = "dnsdist_cache_hits"
