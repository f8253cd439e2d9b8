package testlab

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(RunChildChecked(m, "testlab")) }
