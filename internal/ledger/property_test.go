package ledger

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// propRun is one random sequence of orders, lot selections, fills and
// snapshots.
type propRun struct {
	t   *testing.T
	rng *rand.Rand
	l   *Ledger
	at  time.Time
	n   int // orders and fills made
}

// dec returns a random decimal in (0, max] with up to places decimals.
func (r *propRun) dec(max int64, places int32) decimal.Decimal {
	scale := decimal.New(1, places).IntPart()
	return decimal.New(r.rng.Int64N(max*scale)+1, -places)
}

func (r *propRun) tick() time.Time {
	r.at = r.at.Add(time.Duration(r.rng.Int64N(int64(72 * time.Hour))))
	return r.at
}

func (r *propRun) id(prefix string) string {
	r.n++
	return fmt.Sprintf("%s-%d", prefix, r.n)
}

// TestLotsProperty: over random sequences of buys and sells, partial and
// cancelled, with and without lot selections (valid, partial, stale), and
// positions snapshots, every position's lots stay valid and add up to its
// quantity; buys add their cost to the basis exactly; sells only shrink
// lots, each kept part keeping its share of the basis to the cent and the
// lots of a covering selection being the only ones sold; and the ledger
// survives a JSON round trip.
func TestLotsProperty(t *testing.T) {
	for seed := uint64(1); seed <= 16; seed++ {
		lotsRun(t, seed, nil)
	}
}

// TestWashBookingProperty runs TestLotsProperty's sequences with the
// wash-sale rule booked (X and Z substantially identical, ira
// tax-advantaged, prices up to 200 against bases up to 200 a unit, so
// that sales at a loss and purchases on both sides of them are frequent)
// and checks after every fill and snapshot (checkWash) that no loss is
// left unmatched while a purchase within its window has shares that
// replace nothing: the ledger never keeps a disallowed loss as allowed.
func TestWashBookingProperty(t *testing.T) {
	booked := 0
	for seed := uint64(1); seed <= 30; seed++ {
		booked += lotsRun(t, seed, &WashRules{Rule: tax.WashSale{SubstituteGroups: [][]string{{"X", "Z"}}},
			Class: map[string]string{}, TaxAdvantaged: map[string]bool{"ira": true}})
	}
	if booked < 100 {
		t.Errorf("%d bookings in 30 sequences: the generator does not exercise the rule", booked)
	}
}

// lotsRun runs one random sequence (TestLotsProperty) with the wash-sale
// rules wash, and returns how many wash sales the ledger booked.
func lotsRun(t *testing.T, seed uint64, wash *WashRules) int {
	{
		r := &propRun{t: t, rng: rand.New(rand.NewPCG(seed, 7)), at: t0}
		r.l = New("p")
		r.l.Wash = wash
		accounts := map[string]*Account{}
		for _, name := range []string{"tx", "ira"} {
			acc := &Account{Cash: r.dec(100000, 2), Positions: map[string]decimal.Decimal{}, Lots: map[string][]Lot{}}
			var lots []Lot
			for k := range 1 + r.rng.IntN(5) {
				lots = append(lots, Lot{ID: k + 1, Quantity: r.dec(100, 3), Basis: r.dec(20000, 2),
					Acquired: tax.NewDate(2020+r.rng.IntN(7), time.Month(1+r.rng.IntN(10)), 1+r.rng.IntN(28))})
			}
			acc.Lots["X"] = lots
			acc.Positions["X"] = sumLots(lots)
			acc.Positions["Y"] = r.dec(50, 0) // without lots
			accounts[name] = acc
		}
		r.l.SetBase(t0, "h", accounts, t0)
		for range 80 {
			switch k := r.rng.IntN(10); {
			case k < 4:
				r.trade("buy")
			case k < 9:
				r.trade("sell")
			default:
				r.snapshot()
			}
			if t.Failed() {
				t.Fatalf("seed %d", seed)
			}
		}
		if wash != nil {
			r.roundTrip()
		}
		return len(r.l.WashSales)
	}
}

// trade makes one or two orders of one side and fills them, interleaved,
// in random parts.
func (r *propRun) trade(side string) {
	acct := []string{"tx", "ira"}[r.rng.IntN(2)]
	sym := []string{"X", "Y", "Z"}[r.rng.IntN(3)]
	var ids []string
	free := r.l.Accounts[acct].Positions[sym] // what sells may still sell
	for range 1 + r.rng.IntN(2) {
		qty := r.dec(60, 3)
		if side == "sell" {
			if free.Sign() == 0 {
				break
			}
			qty = decimal.Min(qty, free)
			free = free.Sub(qty)
		}
		id := r.id("o")
		r.l.AddOrders([]events.Order{{OrderID: id, Account: acct, Instrument: sym, Side: side, Quantity: qty, ExpiresAt: r.at.AddDate(1, 0, 0)}}, r.at)
		r.l.MarkPublished([]string{id}, r.at)
		if side == "sell" {
			r.choose(id)
		}
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		k := r.rng.IntN(len(ids))
		o, _ := r.l.Order(ids[k])
		q, st := o.Remaining(), events.FillFilled
		switch r.rng.IntN(4) {
		case 0:
			q = decimal.Min(q, r.dec(20, 3))
			st = events.FillPartial
		case 1:
			q = decimal.Min(q, r.dec(20, 3))
			st = events.FillCancelled
		}
		if st == events.FillPartial && q.Equal(o.Remaining()) {
			st = events.FillFilled
		}
		r.fill(o, q, st)
		if !o.Status.Pending() {
			ids = append(ids[:k], ids[k+1:]...)
		}
	}
}

// choose gives a sell order a lot selection: none, the tax package's, or
// random lots.
func (r *propRun) choose(id string) {
	o, _ := r.l.Order(id)
	lots := r.l.Accounts[o.Account].Lots[o.Instrument]
	if len(lots) == 0 {
		return
	}
	var sales []tax.Sale
	switch r.rng.IntN(3) {
	case 0:
		return
	case 1:
		tl, err := tax.NewLots(toTax(lots))
		if err != nil {
			r.t.Fatal(err)
		}
		// At one price, two orders choose the same lots: the second
		// one's selection goes stale as the first one fills.
		s, err := tl.Select(decimal.Min(o.Quantity, tl.Quantity()), decimal.NewFromInt(100), tax.DateOf(r.at), tax.Options{})
		if err != nil {
			r.t.Fatal(err)
		}
		sales = s.Sales
	default:
		left := o.Quantity
		for _, i := range r.rng.Perm(len(lots)) {
			if left.Sign() == 0 || r.rng.IntN(3) == 0 {
				continue
			}
			q := decimal.Min(left, lots[i].Quantity, r.dec(30, 3))
			sales = append(sales, tax.Sale{Lot: i, Acquired: lots[i].Acquired, Quantity: q})
			left = left.Sub(q)
		}
	}
	if err := r.l.SetLots(id, sales); err != nil {
		r.t.Fatalf("SetLots(%s, %+v): %v", id, sales, err)
	}
}

// fill applies a fill of q to o and checks the lots.
func (r *propRun) fill(o *Order, q decimal.Decimal, st events.FillStatus) {
	t := r.t
	t.Helper()
	acc := r.l.Accounts[o.Account]
	before := append([]Lot(nil), acc.Lots[o.Instrument]...)
	_, hadLots := acc.Lots[o.Instrument]
	held := acc.Positions[o.Instrument]
	sel := append([]LotSale(nil), o.Lots...)
	price, fees := r.dec(200, 2), r.dec(5, 2).Sub(decimal.New(1, -2))
	f := &events.Fill{FillID: r.id("f"), OrderID: o.OrderID, Status: st, Quantity: q, Price: price, Fees: fees, At: r.tick()}
	if _, err := r.l.ApplyFill(o.Account, f, f.At); err != nil {
		t.Fatalf("fill %+v of %+v: %v", f, o.Order, err)
	}
	checkLedgerLots(t, r.l)
	if r.l.Wash != nil {
		// Bookings split and adjust lots: checkWash checks them instead
		// (and lotsRun makes one round trip at the end: the ledger's JSON
		// grows with the orders).
		r.checkWash()
		return
	}
	after := acc.Lots[o.Instrument]
	if q.Sign() == 0 {
		if lotsLine(after) != lotsLine(before) {
			t.Fatalf("an empty fill changed the lots: %s -> %s", lotsLine(before), lotsLine(after))
		}
		return
	}
	switch {
	case o.Side == "buy" && (hadLots || held.Sign() == 0):
		want := append(before, Lot{ID: nextLotID(before), Quantity: q, Basis: q.Mul(price).Add(fees), Acquired: tax.DateOf(f.At.UTC())})
		if lotsLine(after) != lotsLine(want) {
			t.Fatalf("buy of %s at %s + %s:\n got %s\nwant %s", q, price, fees, lotsLine(after), lotsLine(want))
		}
	case o.Side == "buy":
		if len(after) != 0 {
			t.Fatalf("a buy into a position without lots added %s", lotsLine(after))
		}
	case hadLots:
		r.checkSell(before, after, sel, q)
	}
	if r.rng.IntN(5) == 0 {
		r.roundTrip()
	}
}

// checkSell checks what a sell of q did to the lots.
func (r *propRun) checkSell(before, after []Lot, sel []LotSale, q decimal.Decimal) {
	t := r.t
	t.Helper()
	cent := decimal.New(1, -2)
	covered, valid := decimal.Zero, true
	chosen := map[int]bool{}
	for _, s := range sel {
		i := lotIndex(before, s.Lot)
		valid = valid && i >= 0 && before[i].Acquired == s.Acquired && !s.Quantity.GreaterThan(before[i].Quantity)
		covered = covered.Add(s.Quantity)
		chosen[s.Lot] = true
	}
	for _, b := range before {
		i := lotIndex(after, b.ID)
		if i < 0 {
			continue
		}
		a := after[i]
		switch {
		case a.Acquired != b.Acquired || a.Quantity.GreaterThan(b.Quantity):
			t.Fatalf("sell of %s: lot %+v became %+v", q, b, a)
		case a.Quantity.Equal(b.Quantity) && !a.Basis.Equal(b.Basis):
			t.Fatalf("sell of %s: lot %d not sold but its basis moved from %s to %s", q, b.ID, b.Basis, a.Basis)
		case !a.Quantity.Equal(b.Quantity) && valid && !covered.LessThan(q) && !chosen[b.ID]:
			t.Fatalf("sell of %s covered by the selection %+v sold lot %d, which it does not name", q, sel, b.ID)
		}
		// The part kept keeps its share of the basis, to the cent.
		share := b.Basis.Mul(a.Quantity).DivRound(b.Quantity, 8)
		if a.Basis.Sub(share).Abs().GreaterThan(cent) {
			t.Fatalf("lot %d: %s of %s for %s keeps a basis of %s, want about %s", b.ID, a.Quantity, b.Quantity, b.Basis, a.Basis, share)
		}
	}
	for _, a := range after {
		if lotIndex(before, a.ID) < 0 {
			t.Fatalf("a sell added lot %+v", a)
		}
	}
}

// snapshot applies a positions report: the same quantities but, at
// times, one position changed (which loses its lots).
func (r *propRun) snapshot() {
	at := r.tick()
	p := &events.Positions{AsOf: at, Accounts: map[string]events.AccountPositions{}}
	changed := r.rng.IntN(2) == 0
	for name, a := range r.l.Accounts {
		ap := events.AccountPositions{Cash: a.Cash.Abs(), Positions: map[string]decimal.Decimal{}}
		for sym, q := range a.Positions {
			if changed && name == "tx" && sym == "X" {
				q = q.Add(decimal.New(1, -3))
			}
			ap.Positions[sym] = q
		}
		p.Accounts[name] = ap
	}
	accs, err := FromPositions(p)
	if err != nil {
		r.t.Fatal(err)
	}
	before := lotsLine(r.l.Accounts["ira"].Lots["X"])
	r.l.SetBase(at, "", accs, at)
	checkLedgerLots(r.t, r.l)
	if r.l.Wash != nil {
		r.checkWash()
	}
	if got := lotsLine(r.l.Accounts["ira"].Lots["X"]); got != before {
		r.t.Fatalf("a snapshot of the same quantity changed the lots: %s -> %s", before, got)
	}
	if _, ok := r.l.Accounts["tx"].Lots["X"]; changed && ok {
		r.t.Fatal("a snapshot of another quantity kept the lots")
	}
}

// roundTrip encodes and decodes the ledger and checks it is unchanged.
func (r *propRun) roundTrip() {
	data, err := json.Marshal(r.l)
	if err != nil {
		r.t.Fatal(err)
	}
	var got Ledger
	if err := json.Unmarshal(data, &got); err != nil {
		r.t.Fatalf("decode: %v", err)
	}
	again, err := json.Marshal(&got)
	if err != nil || string(again) != string(data) {
		r.t.Fatalf("round trip changed the ledger (%v):\n%s\n%s", err, data, again)
	}
	for name, a := range r.l.Accounts {
		for sym, lots := range a.Lots {
			if lotsLine(got.Accounts[name].Lots[sym]) != lotsLine(lots) {
				r.t.Fatalf("%s %s: lots %s after a round trip, want %s", name, sym, lotsLine(got.Accounts[name].Lots[sym]), lotsLine(lots))
			}
		}
	}
}

// checkWash checks the wash-sale bookings of the ledger: a lot with a
// disallowed loss in its basis is a replacement in a taxable account with
// its holding period moved back; a replacement in the tax-advantaged
// account has neither; every booking is of shares and not negative; and
// no loss waits unmatched while a lot acquired within its window (30 days
// either side, of X or Z for either) has shares that replace nothing.
// (The history's buys are left out: once the lots of a day are sold, or
// dropped by a snapshot of another quantity, the buy of that day counts
// again for what they no longer show, more purchases than there are,
// which can only disallow more.)
func (r *propRun) checkWash() {
	t := r.t
	t.Helper()
	for name, a := range r.l.Accounts {
		for sym, lots := range a.Lots {
			for _, lot := range lots {
				adv := r.l.Wash.TaxAdvantaged[name]
				switch {
				case lot.WashBasis.Sign() > 0 && (!lot.Replacement || adv || lot.HoldingFrom.IsZero()):
					t.Fatalf("%s %s: lot %+v has a wash-sale basis but is no taxable replacement", name, sym, lot)
				case adv && (lot.WashBasis.Sign() != 0 || !lot.HoldingFrom.IsZero()):
					t.Fatalf("%s %s: lot %+v in a tax-advantaged account was adjusted", name, sym, lot)
				}
			}
		}
	}
	for _, b := range r.l.WashSales {
		if b.Quantity.Sign() <= 0 || b.Disallowed.Sign() < 0 {
			t.Fatalf("booking %+v", b)
		}
	}
	same := func(a, b string) bool { return a == b || a != "Y" && b != "Y" }
	for _, p := range r.l.History.Losses {
		if p.Quantity.Sign() <= 0 || p.Loss.Sign() <= 0 {
			t.Fatalf("pending loss %+v", p)
		}
		purchases, src := r.l.purchases(p.Date.AddDays(-30))
		for k, b := range purchases {
			if src[k].lot > 0 && same(b.Instrument, p.Instrument) && !b.Date.After(p.Date.AddDays(30)) {
				t.Fatalf("loss %+v waits unmatched while purchase %+v replaces nothing\nhistory %+v\njournal %+v\nlots %+v", p, b, r.l.History, r.l.WashSales, r.l.Accounts["tx"].Lots)
			}
		}
	}
}
