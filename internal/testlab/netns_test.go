package testlab

import (
	"strings"
	"testing"
)

func TestLabPrefixFitsInterfaceNames(t *testing.T) {
	p := LabPrefix(t)
	if len(p) != 8 || !strings.HasPrefix(p, "af") || len(p+"rtr0a") > MaxIfName {
		t.Errorf("prefix %q", p)
	}
	if LabPrefix(t) != p {
		t.Error("prefix not stable")
	}
}
