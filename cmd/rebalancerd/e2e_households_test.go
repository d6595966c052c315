package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// testModel is testPolicy as a model (threshold trigger).
var testModel = strings.NewReplacer("policy: test-household", "model: balanced-60",
	"accounts:\n  ira: {type: traditional_ira}\n", "").Replace(policyText("threshold", ""))

// testHousehold is a household on testModel with testHoldings.
func testHousehold(name string) string {
	return fmt.Sprintf("household: %s\nmodel: balanced-60\nholdings: ../holdings/%s.yaml\naccounts:\n  ira: {type: traditional_ira}\n", name, name)
}

// startHouseholds starts a daemon with test-household in policies and the
// households h1 and h2 on testModel in households_dir.
func startHouseholds(t *testing.T) *daemon {
	t.Helper()
	var d *daemon
	d = startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) {
		dir := filepath.Dir(c.File)
		c.ModelsDir, c.HouseholdsDir = filepath.Join(dir, "models"), filepath.Join(dir, "households")
		writeFile(t, filepath.Join(c.ModelsDir, "balanced.yaml"), testModel)
		for _, h := range []string{"h1", "h2"} {
			writeFile(t, filepath.Join(dir, "households", h+".yaml"), testHousehold(h))
			writeFile(t, filepath.Join(dir, "holdings", h+".yaml"), testHoldings)
		}
	})
	return d
}

// household returns the status of a policy, nil when it is not loaded.
func (d *daemon) household(name string) *engine.PolicyStatus {
	for _, p := range d.Engine.Status().Policies {
		if p.Policy == name {
			return &p
		}
	}
	return nil
}

// invalid returns the invalid_policy detail of a policy's blocks.
func invalid(p *engine.PolicyStatus) string {
	for _, b := range p.Blocked {
		if b.Reason == metrics.BlockInvalidPolicy {
			return b.Detail
		}
	}
	return ""
}

// expectedHouseholdPlan is the plan of household h on model m at prices
// kv, computed by the core from the two files.
func expectedHouseholdPlan(t *testing.T, model, household string, at time.Time, kv ...string) *plan.Plan {
	t.Helper()
	m, err := policy.ParseModel("model.yaml", []byte(model))
	if err != nil {
		t.Fatal(err)
	}
	h, err := policy.ParseHousehold("h.yaml", []byte(household))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compose(m, h)
	if err != nil {
		t.Fatal(err)
	}
	return planOf(t, p, at, kv...)
}

// TestHouseholdsPlan: the households of households_dir run next to the
// explicit policies, and each one's orders are exactly those the core
// plans from its model and household files. A model edit gives every
// household on it a new version, and so new order ids.
func TestHouseholdsPlan(t *testing.T) {
	d := startHouseholds(t)
	w := d.watchOrders()
	for _, name := range []string{"test-household", "h1", "h2"} {
		if d.household(name) == nil {
			t.Fatalf("%s not loaded: %+v", name, d.Engine.Status().Policies)
		}
	}
	if rl := d.lastReload; !rl.OK || rl.Files != 3 || rl.Households != 2 || rl.Refused != 0 {
		t.Errorf("last reload %+v", rl)
	}
	d.prices("VTI", "140", "BND", "100")
	want := expectedHouseholdPlan(t, testModel, testHousehold("h1"), d.clock.Now(), "VTI", "140", "BND", "100")
	orders := w.waitOrders(t, 3*len(want.Orders))
	byPolicy := map[string][]events.Order{}
	for _, o := range orders {
		byPolicy[o.Policy] = append(byPolicy[o.Policy], o)
	}
	sameOrders(t, byPolicy["h1"], want, "threshold")
	sameOrders(t, byPolicy["h2"], expectedHouseholdPlan(t, testModel, testHousehold("h2"), d.clock.Now(), "VTI", "140", "BND", "100"), "threshold")

	// The model edited: both households change version, the explicit
	// policy does not; the same plan on the new version has new ids.
	before := map[string]string{}
	for _, name := range []string{"test-household", "h1", "h2"} {
		before[name] = d.household(name).Version
	}
	edited := strings.Replace(testModel, "order_ttl: 2h", "order_ttl: 3h", 1)
	writeFile(t, filepath.Join(d.dir, "models", "balanced.yaml"), edited)
	if err := d.Reload(reasonSIGHUP); err != nil {
		t.Fatal(err)
	}
	for name, v := range before {
		if changed := d.household(name).Version != v; changed != (name != "test-household") {
			t.Errorf("%s: version %s -> %s after the model edit", name, v, d.household(name).Version)
		}
	}
	again := expectedHouseholdPlan(t, edited, testHousehold("h1"), want.AsOf, "VTI", "140", "BND", "100")
	if again.ID == want.ID || again.Orders[0].ID == want.Orders[0].ID || len(again.Orders) != len(want.Orders) {
		t.Errorf("plan ids %s, %s on both versions", want.ID, again.ID)
	}
}

// TestHouseholdsReload: household and model files follow edits without a
// restart (the watcher sees the directories); a bad household file blocks
// only that household, on its last accepted version; a bad model blocks
// its households; a new bad file does not start; a removed file stops
// its household.
func TestHouseholdsReload(t *testing.T) {
	d := startHouseholds(t)
	dir := d.dir
	waitFor := func(what string, cond func() error) {
		t.Helper()
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if err := cond(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		})
	}
	v1 := d.household("h1").Version

	// A new household file starts without a reload command.
	writeFile(t, filepath.Join(dir, "holdings", "h3.yaml"), testHoldings)
	writeFile(t, filepath.Join(dir, "households", "h3.yaml"), testHousehold("h3"))
	waitFor("h3 loaded", func() error {
		if d.household("h3") == nil {
			return fmt.Errorf("not loaded")
		}
		return nil
	})

	// h2 broken: it keeps its version, blocked; the others are not.
	h2 := filepath.Join(dir, "households", "h2.yaml")
	v2 := d.household("h2").Version
	writeFile(t, h2, testHousehold("h2")+"targets: {stocks: 100%}\n")
	waitFor("h2 blocked", func() error {
		if p := d.household("h2"); p == nil || !strings.Contains(invalid(p), h2+":6: targets: set by the model") {
			return fmt.Errorf("status %+v", p)
		}
		return nil
	})
	if d.household("h2").Version != v2 || invalid(d.household("h1")) != "" || invalid(d.household("h3")) != "" {
		t.Errorf("h2 %s (was %s), h1 blocked %q, h3 blocked %q", d.household("h2").Version, v2, invalid(d.household("h1")), invalid(d.household("h3")))
	}
	d.reloadMu.Lock()
	rl := d.lastReload
	d.reloadMu.Unlock()
	if rl.OK || rl.Refused != 1 || !strings.Contains(rl.Error, h2+":6: targets") || rl.Files != 4 {
		t.Errorf("last reload %+v", rl)
	}
	if _, ready := d.httpGet("/readyz"); !strings.Contains(ready, h2+":6") {
		t.Errorf("/readyz does not name the broken household: %s", ready)
	}
	// A price move that breaches: the blocked household plans nothing.
	w := d.watchOrders()
	d.prices("VTI", "140", "BND", "100")
	want := expectedHouseholdPlan(t, testModel, testHousehold("h1"), d.clock.Now(), "VTI", "140", "BND", "100")
	orders := w.waitOrders(t, 3*len(want.Orders)) // test-household, h1, h3
	for _, o := range orders {
		if o.Policy == "h2" {
			t.Errorf("blocked h2 planned %+v", o)
		}
	}
	if p := d.household("h2"); len(p.PendingOrders) != 0 {
		t.Errorf("h2 pending %+v", p.PendingOrders)
	}

	// A new household that is invalid does not start; h2 fixed runs again.
	bad := filepath.Join(dir, "households", "h4.yaml")
	writeFile(t, bad, testHousehold("h4")) // no holdings file
	writeFile(t, h2, testHousehold("h2"))
	waitFor("h2 unblocked, h4 refused", func() error {
		d.reloadMu.Lock()
		rl := d.lastReload
		d.reloadMu.Unlock()
		if p := d.household("h2"); p == nil || invalid(p) != "" || rl.Refused != 1 || !strings.Contains(rl.Error, "h4.yaml") {
			return fmt.Errorf("h2 %+v, reload %+v", p, rl)
		}
		return nil
	})
	if d.household("h4") != nil {
		t.Error("h4 runs without its holdings")
	}

	// The model broken: every household on it blocked, on its last version.
	model := filepath.Join(dir, "models", "balanced.yaml")
	writeFile(t, model, strings.Replace(testModel, "bonds: 35%", "bonds: 30%", 1))
	waitFor("households blocked by the model", func() error {
		for _, name := range []string{"h1", "h2", "h3"} {
			if p := d.household(name); p == nil || !strings.Contains(invalid(p), `model "balanced-60" (`+model+`) is invalid`) {
				return fmt.Errorf("%s: %+v", name, p)
			}
		}
		return nil
	})
	if d.household("h1").Version != v1 || invalid(d.household("test-household")) != "" {
		t.Errorf("h1 version %s (was %s); test-household %+v", d.household("h1").Version, v1, d.household("test-household").Blocked)
	}
	d.reloadMu.Lock()
	rl = d.lastReload
	d.reloadMu.Unlock()
	if !strings.Contains(rl.Error, model+":4: targets: level sums to 95%") {
		t.Errorf("the model's own problem is not shown: %+v", rl)
	}

	// Fixed, and a household removed.
	writeFile(t, model, testModel)
	if err := os.Remove(filepath.Join(dir, "households", "h3.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor("model fixed, h3 removed", func() error {
		if p := d.household("h1"); p == nil || invalid(p) != "" || d.household("h3") != nil {
			return fmt.Errorf("h1 %+v, h3 %v", p, d.household("h3") != nil)
		}
		return nil
	})
	if d.household("h1").Version != v1 {
		t.Errorf("h1 version %s, want %s again", d.household("h1").Version, v1)
	}
	names := []string{}
	for _, p := range d.Engine.Status().Policies {
		names = append(names, p.Policy)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "h1,h2,test-household" {
		t.Errorf("policies %v", names)
	}
}
