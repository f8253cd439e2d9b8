package testlab_test

import (
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/anycastlab"
	"github.com/anyfront/anyfront/internal/testlab/birdlab"
	"github.com/anyfront/anyfront/internal/testlab/faultlab"
)

// TestStartersSkipOrFail checks the starters that find their programs
// themselves: they skip under -short before starting anything, and treat
// a missing program as RequireBinary does.
func TestStartersSkipOrFail(t *testing.T) {
	starters := map[string]func(testing.TB){
		"StartUnbound":  func(tb testing.TB) { testlab.StartUnbound(tb, testlab.UnboundOptions{}) },
		"StartNamed":    func(tb testing.TB) { testlab.StartNamed(tb) },
		"birdlab.Start": func(tb testing.TB) { birdlab.Start(tb, nil, birdlab.Options{}) },
	}
	for name, start := range starters {
		t.Run(name+" under -short", func(t *testing.T) {
			testlab.SetShort(t, true)
			t.Setenv(testlab.StrictEnv, "1")
			if o := testlab.RunOutcome(t, start); !o.Skipped || !strings.Contains(o.Msg, "-short") {
				t.Fatalf("skipped %v, failed %v: %s", o.Skipped, o.Failed, o.Msg)
			}
		})
		t.Run(name+" with its program missing", func(t *testing.T) {
			testlab.SetShort(t, false)
			testlab.WithoutPrograms(t)
			t.Setenv(testlab.StrictEnv, "")
			if o := testlab.RunOutcome(t, start); !o.Skipped || !strings.Contains(o.Msg, "install-deps.sh") {
				t.Fatalf("not strict: skipped %v, failed %v: %s", o.Skipped, o.Failed, o.Msg)
			}
			t.Setenv(testlab.StrictEnv, "1")
			if o := testlab.RunOutcome(t, start); !o.Failed || !strings.Contains(o.Msg, testlab.StrictEnv) {
				t.Fatalf("strict: skipped %v, failed %v: %s", o.Skipped, o.Failed, o.Msg)
			}
		})
	}
	t.Run("namespace helpers under -short", func(t *testing.T) {
		testlab.SetShort(t, true)
		for what, start := range map[string]func(testing.TB){
			"NewNetns":                func(tb testing.TB) { testlab.NewNetns(tb, "x") },
			"NewVeth":                 func(tb testing.TB) { testlab.NewVeth(tb, "x", nil, nil, nil, nil) },
			"NewXDPLab":               func(tb testing.TB) { testlab.NewXDPLab(tb) },
			"anycastlab.Start":        func(tb testing.TB) { anycastlab.Start(tb, anycastlab.Options{}) },
			"faultlab.StartLossyFarm": func(tb testing.TB) { faultlab.StartLossyFarm(tb, faultlab.LossyFarmOptions{}) },
		} {
			if o := testlab.RunOutcome(t, start); !o.Skipped || !strings.Contains(o.Msg, "-short") {
				t.Errorf("%s: skipped %v, failed %v: %s", what, o.Skipped, o.Failed, o.Msg)
			}
		}
	})
}
