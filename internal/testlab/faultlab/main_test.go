package faultlab

import (
	"os"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

func TestMain(m *testing.M) { os.Exit(testlab.RunChildChecked(m, "faultlab")) }
