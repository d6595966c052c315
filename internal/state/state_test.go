package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

func TestSaveLoad(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ledgers"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load("p"); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	at := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	l := ledger.New("p")
	l.SetBase(at, "abc", map[string]*ledger.Account{"ira": {Cash: decimal.RequireFromString("1200.50"),
		Positions: map[string]decimal.Decimal{"TM": decimal.RequireFromString("0.12345678901234567890")}}}, at)
	l.AddOrders([]events.Order{{OrderID: "x-1", Quantity: decimal.RequireFromString("3"), ExpiresAt: at}}, at)
	l.LastFire = "2026-11-01 01:30"
	for _, durable := range []bool{false, true} {
		if err := s.Save(l, durable); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Load("p")
		if err != nil || !ok {
			t.Fatalf("load: %v %v", ok, err)
		}
		if !got.Accounts["ira"].Positions["TM"].Equal(l.Accounts["ira"].Positions["TM"]) || !got.Accounts["ira"].Cash.Equal(decimal.RequireFromString("1200.5")) {
			t.Errorf("decimals not exact after a round trip: %+v", got.Accounts["ira"])
		}
		if len(got.Orders) != 1 || got.Orders[0].Status != ledger.Outbox || got.LastFire != l.LastFire || !got.BaseAsOf.Equal(at) {
			t.Errorf("round trip lost fields: %+v", got)
		}
	}
	names, err := s.Policies()
	if err != nil || len(names) != 1 || names[0] != "p" {
		t.Errorf("policies %v %v", names, err)
	}
	left, _ := filepath.Glob(filepath.Join(s.Dir(), ".*tmp"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestLoadCorrupt(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "p.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load("p"); err == nil || !strings.Contains(err.Error(), "p.json") {
		t.Errorf("error %v, want one naming the file", err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "q.json"), []byte(`{"policy":"other"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load("q"); err == nil || !strings.Contains(err.Error(), `holds policy "other"`) {
		t.Errorf("error %v", err)
	}
}
