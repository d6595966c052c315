// Package portfolio holds what a household owns (holdings) and what things
// cost (prices), reads both from their YAML files, and binds them to a
// policy as a Book: dense, index-addressed figures that drift and planning
// compute on without lookups by name.
package portfolio

import (
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/dec64"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// Holdings is the cash and positions of each account of one household.
type Holdings struct {
	File     string
	AsOf     time.Time
	Accounts []AccountHoldings
	// Trades are the recent trades the file lists (trades:): purchases
	// and sales at a loss that the lots do not show, for the wash-sale
	// rule.
	Trades tax.History
}

// AccountHoldings is one account's cash and positions.
type AccountHoldings struct {
	Name      string
	Cash      decimal.Decimal
	Positions []Position
	Line      int
}

// Position is a quantity of one instrument.
type Position struct {
	Instrument string
	Quantity   decimal.Decimal
	// Lots are the position's tax lots when the file lists them; Quantity
	// is then their sum. Without lots it holds none (Lots.Len() == 0).
	Lots tax.Lots
	Line int
}

// Prices is a set of quotes.
type Prices struct {
	File   string
	AsOf   time.Time
	Quotes map[string]Quote
	Line   int // line of the prices mapping, for messages about missing symbols
}

// Quote is the price of one instrument at a time.
type Quote struct {
	Price decimal.Decimal
	At    time.Time
	Line  int
}

// ParseHoldings reads a holdings file:
//
//	as_of: 2026-11-20T21:00:00Z
//	accounts:
//	  roth: {cash: "1200.50", positions: {VTI: "120"}}
//	  taxable:
//	    positions:
//	      VXUS:
//	        quantity: "50"   # optional: if given, the sum of the lots
//	        lots:
//	          - {quantity: "30", cost_basis: "1650.00", acquired: 2024-01-15}
//	          - {quantity: "20", unit_cost: "61.05", acquired: 2025-06-02}
//
// A position is a quantity, or a mapping with its tax lots: each lot has a
// positive quantity, its total cost basis (cost_basis) or its cost per
// unit (unit_cost, multiplied by the quantity exactly), and the trade date
// of its purchase (acquired), not after as_of's day.
//
// An optional trades list gives the household's recent trades that the
// lots do not show, in any of its accounts (a purchase in an IRA, a sale
// at a loss, a dividend reinvested), for the wash-sale rule:
//
//	trades:
//	  - {date: 2026-11-10, account: roth, instrument: VTI, side: buy, quantity: "10"}
//	  - {date: 2026-11-02, account: taxable, instrument: VOO, side: sell}
//
// A buy is a purchase (quantity optional: without it, the purchase is
// taken to replace any number of shares sold at a loss); a sell is a
// sale at a loss (sales at a gain need not be listed), which keeps buys of
// the instrument out of plans within its window. Dates are trade dates,
// not after as_of's day.
func ParseHoldings(file string, data []byte) (*Holdings, error) {
	r := &strictyaml.Reader{File: file}
	root := r.Parse(data)
	if root == nil {
		return nil, r.Errs.Err()
	}
	h := &Holdings{File: file}
	f := r.Object(root, "", "as_of", "accounts", "trades")
	if v, ok := f["as_of"]; ok {
		h.AsOf, _ = r.Time(v, "as_of")
	} else {
		r.Errorf(root, "as_of", "required field is missing")
	}
	if v, ok := f["trades"]; ok {
		for i, item := range r.Sequence(v, "trades") {
			readTrade(r, item, fmt.Sprintf("trades[%d]", i), h)
		}
	}
	// A missing field is reported once: Entries would add "missing".
	var accounts []strictyaml.Entry
	if an, ok := f["accounts"]; ok {
		accounts = r.Entries(an, "accounts")
	} else {
		r.Errorf(root, "accounts", "required field is missing")
	}
	for _, e := range accounts {
		field := strictyaml.Join("accounts", e.Key)
		af := r.Object(e.Value, field, "cash", "positions")
		acct := AccountHoldings{Name: e.Key, Line: e.KeyNode.Line}
		if v, ok := af["cash"]; ok {
			acct.Cash, _ = r.NonNegative(v, strictyaml.Join(field, "cash"))
		}
		if v, ok := af["positions"]; ok {
			entries := r.Entries(v, strictyaml.Join(field, "positions"))
			acct.Positions = make([]Position, 0, len(entries))
			for _, pe := range entries {
				pfield := strictyaml.Join(field, "positions."+pe.Key)
				if pe.Value != nil && pe.Value.Kind == yaml.MappingNode {
					if pos, ok := readLots(r, pe, pfield, h.AsOf); ok {
						acct.Positions = append(acct.Positions, pos)
					}
					continue
				}
				q, ok := r.NonNegative(pe.Value, pfield)
				if ok {
					acct.Positions = append(acct.Positions, Position{Instrument: pe.Key, Quantity: q, Line: pe.KeyNode.Line})
				}
			}
		}
		h.Accounts = append(h.Accounts, acct)
	}
	if err := r.Errs.Err(); err != nil {
		return nil, err
	}
	return h, nil
}

// readLots reads a position given as a mapping with its tax lots. asOf is
// the holdings' time (zero when it is missing): no lot may be acquired
// after its day.
func readLots(r *strictyaml.Reader, pe strictyaml.Entry, field string, asOf time.Time) (Position, bool) {
	errs := len(r.Errs)
	f := r.Object(pe.Value, field, "quantity", "lots")
	if pe.Value.Anchor != "" {
		return Position{}, false // reported by Object
	}
	var given *decimal.Decimal
	qn, hasQty := f["quantity"]
	if hasQty {
		if q, ok := r.NonNegative(qn, strictyaml.Join(field, "quantity")); ok {
			given = &q
		}
	}
	ln, ok := f["lots"]
	if !ok {
		r.Errorf(pe.Value, strictyaml.Join(field, "lots"), "required field is missing")
		return Position{}, false
	}
	seqErrs := len(r.Errs)
	items := r.Sequence(ln, strictyaml.Join(field, "lots"))
	if len(items) == 0 && len(r.Errs) == seqErrs {
		r.Errorf(ln, strictyaml.Join(field, "lots"), "want at least one lot")
	}
	lots := make([]tax.Lot, 0, len(items))
	for i, item := range items {
		if lot, ok := readLot(r, item, fmt.Sprintf("%s.lots[%d]", field, i), asOf); ok {
			lots = append(lots, lot)
		}
	}
	if len(r.Errs) > errs {
		return Position{}, false
	}
	l, err := tax.NewLots(lots)
	if err != nil { // readLot checked every lot: not expected
		r.Errorf(ln, strictyaml.Join(field, "lots"), "%v", err)
		return Position{}, false
	}
	if given != nil && !given.Equal(l.Quantity()) {
		r.Errorf(qn, strictyaml.Join(field, "quantity"), "quantity %s differs from the sum of the lots, %s", *given, l.Quantity())
		return Position{}, false
	}
	return Position{Instrument: pe.Key, Quantity: l.Quantity(), Lots: l, Line: pe.KeyNode.Line}, true
}

// readTrade reads one trade of the trades list into h.Trades.
func readTrade(r *strictyaml.Reader, n *yaml.Node, field string, h *Holdings) {
	errs := len(r.Errs)
	f := r.Object(n, field, "date", "account", "instrument", "side", "quantity")
	if n == nil || n.Kind != yaml.MappingNode {
		return // reported by Object
	}
	var t tax.Trade
	str := func(name string) string {
		v, ok := f[name]
		if !ok {
			r.Errorf(n, strictyaml.Join(field, name), "required field is missing")
			return ""
		}
		s, _ := r.String(v, strictyaml.Join(field, name))
		return s
	}
	t.Account, t.Instrument = str("account"), str("instrument")
	side := str("side")
	if side != "" && side != "buy" && side != "sell" {
		r.Errorf(f["side"], strictyaml.Join(field, "side"), "want buy or sell (a sale at a loss), got %q", side)
	}
	if v, ok := f["date"]; !ok {
		r.Errorf(n, strictyaml.Join(field, "date"), "required field is missing")
	} else if s, ok := r.Scalar(v, strictyaml.Join(field, "date")); ok {
		d, err := tax.ParseDate(strings.TrimSpace(s))
		switch {
		case err != nil:
			r.Errorf(v, strictyaml.Join(field, "date"), "%v", err)
		case !h.AsOf.IsZero() && d.After(tax.DateOf(h.AsOf)):
			r.Errorf(v, strictyaml.Join(field, "date"), "%s is after the day of as_of, %s", d, tax.DateOf(h.AsOf))
		}
		t.Date = d
	}
	if v, ok := f["quantity"]; ok {
		if q, ok := r.Decimal(v, strictyaml.Join(field, "quantity")); ok {
			if q.Sign() <= 0 {
				r.Errorf(v, strictyaml.Join(field, "quantity"), "must be positive, got %s", q)
			}
			t.Quantity = q
		}
	}
	if len(r.Errs) != errs {
		return
	}
	if side == "buy" {
		h.Trades.Buys = append(h.Trades.Buys, t)
	} else {
		h.Trades.LossSales = append(h.Trades.LossSales, t)
	}
}

// readLot reads one tax lot: {quantity, cost_basis or unit_cost, acquired}.
func readLot(r *strictyaml.Reader, n *yaml.Node, field string, asOf time.Time) (tax.Lot, bool) {
	errs := len(r.Errs)
	f := r.Object(n, field, "quantity", "cost_basis", "unit_cost", "acquired")
	if n == nil || n.Kind != yaml.MappingNode || n.Anchor != "" {
		return tax.Lot{}, false // reported by Object
	}
	var lot tax.Lot
	if v, ok := f["quantity"]; !ok {
		r.Errorf(n, strictyaml.Join(field, "quantity"), "required field is missing")
	} else if q, ok := r.Decimal(v, strictyaml.Join(field, "quantity")); ok {
		if q.Sign() <= 0 {
			r.Errorf(v, strictyaml.Join(field, "quantity"), "must be positive, got %s", q)
		}
		lot.Quantity = q
	}
	basis, hasBasis := f["cost_basis"]
	unit, hasUnit := f["unit_cost"]
	switch {
	case hasBasis && hasUnit:
		r.Errorf(unit, strictyaml.Join(field, "unit_cost"), "give cost_basis or unit_cost, not both")
	case hasBasis:
		lot.Basis, _ = r.NonNegative(basis, strictyaml.Join(field, "cost_basis"))
	case hasUnit:
		if u, ok := r.NonNegative(unit, strictyaml.Join(field, "unit_cost")); ok {
			lot.Basis = u.Mul(lot.Quantity)
		}
	default:
		r.Errorf(n, strictyaml.Join(field, "cost_basis"), "required field is missing (or give unit_cost)")
	}
	if v, ok := f["acquired"]; !ok {
		r.Errorf(n, strictyaml.Join(field, "acquired"), "required field is missing")
	} else if s, ok := r.Scalar(v, strictyaml.Join(field, "acquired")); ok {
		d, err := tax.ParseDate(strings.TrimSpace(s))
		switch {
		case err != nil:
			r.Errorf(v, strictyaml.Join(field, "acquired"), "%v", err)
		case !asOf.IsZero() && d.After(tax.DateOf(asOf)):
			r.Errorf(v, strictyaml.Join(field, "acquired"), "%s is after the day of as_of, %s", d, tax.DateOf(asOf))
		}
		lot.Acquired = d
	}
	return lot, len(r.Errs) == errs
}

// ParsePrices reads a prices file:
//
//	as_of: 2026-11-20T21:00:00Z
//	prices: {VTI: "285.12", BND: "72.15"}
//
// Every price must be positive. Each quote's time is the file's as_of.
func ParsePrices(file string, data []byte) (*Prices, error) {
	r := &strictyaml.Reader{File: file}
	root := r.Parse(data)
	if root == nil {
		return nil, r.Errs.Err()
	}
	q := &Prices{File: file, Quotes: map[string]Quote{}}
	f := r.Object(root, "", "as_of", "prices")
	if v, ok := f["as_of"]; ok {
		q.AsOf, _ = r.Time(v, "as_of")
	} else {
		r.Errorf(root, "as_of", "required field is missing")
	}
	pn, ok := f["prices"]
	var quotes []strictyaml.Entry
	if !ok {
		r.Errorf(root, "prices", "required field is missing")
	} else {
		q.Line = pn.Line
		quotes = r.Entries(pn, "prices")
	}
	for _, e := range quotes {
		field := strictyaml.Join("prices", e.Key)
		price, ok := r.Decimal(e.Value, field)
		if !ok {
			continue
		}
		if price.Sign() <= 0 {
			r.Errorf(e.Value, field, "price must be positive, got %s", price)
			continue
		}
		q.Quotes[e.Key] = Quote{Price: price, At: q.AsOf, Line: e.KeyNode.Line}
	}
	if err := r.Errs.Err(); err != nil {
		return nil, err
	}
	return q, nil
}

// Book is a household's holdings and prices bound to a policy: every slice
// is indexed like the policy's accounts or instruments.
type Book struct {
	Policy       *policy.Policy
	HoldingsAsOf time.Time
	PricesAsOf   time.Time
	// Cash is each account's total cash, reserve included.
	Cash []decimal.Decimal
	// Qty is the quantity of each instrument in each account:
	// Qty[account][instrument], zero when not held.
	Qty [][]decimal.Decimal
	// Price is each instrument's price; zero only for an instrument that is
	// neither held nor targeted and has no quote.
	Price []decimal.Decimal
	// Lots are the tax lots of each position given with lots:
	// Lots[account][instrument], holding none for a position given as a
	// quantity. Lots is nil when the holdings list no lot at all.
	Lots [][]tax.Lots
}

// FreeCash returns account a's cash above its reserve, never negative:
// the difference as decimal's Sub makes it (dec64.Sub, on int64
// coefficients while they fit).
func (b *Book) FreeCash(a int) decimal.Decimal {
	free := dec64.Sub(b.Cash[a], b.Policy.Accounts[a].Reserve)
	if free.Sign() < 0 {
		return decimal.Zero
	}
	return free
}

// Bind checks holdings and prices against policy p and returns the Book.
// It reports, with file and line, accounts the policy does not know, held
// instruments with no sleeve, and missing prices for instruments that are
// held or targeted. Quotes for instruments the policy does not name are
// ignored: one price file may serve several policies.
func Bind(p *policy.Policy, h *Holdings, q *Prices) (*Book, error) {
	var errs strictyaml.Errors
	fail := func(file string, line int, field, format string, args ...any) {
		errs = append(errs, &strictyaml.Error{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	nA, nI := len(p.Accounts), len(p.Instruments)
	b := &Book{
		Policy:       p,
		HoldingsAsOf: h.AsOf,
		PricesAsOf:   q.AsOf,
		Cash:         make([]decimal.Decimal, nA),
		Qty:          make([][]decimal.Decimal, nA),
		Price:        make([]decimal.Decimal, nI),
	}
	qty := make([]decimal.Decimal, nA*nI)
	for a := range b.Qty {
		b.Qty[a] = qty[a*nI : (a+1)*nI : (a+1)*nI]
	}
	held := make([]bool, nI)
	for _, ah := range h.Accounts {
		a, ok := p.AccountIndex(ah.Name)
		if !ok {
			fail(h.File, ah.Line, "accounts."+ah.Name, "policy %s has no account %q", p.Name, ah.Name)
			continue
		}
		b.Cash[a] = ah.Cash
		for _, pos := range ah.Positions {
			i, ok := p.InstrumentIndex(pos.Instrument)
			if !ok {
				fail(h.File, pos.Line, "accounts."+ah.Name+".positions."+pos.Instrument,
					"instrument has no sleeve: policy %s does not list it under instruments", p.Name)
				continue
			}
			b.Qty[a][i] = b.Qty[a][i].Add(pos.Quantity)
			held[i] = held[i] || pos.Quantity.Sign() > 0
			if pos.Lots.Len() > 0 {
				if b.Lots == nil {
					b.Lots = make([][]tax.Lots, nA)
					lots := make([]tax.Lots, nA*nI)
					for a := range b.Lots {
						b.Lots[a] = lots[a*nI : (a+1)*nI : (a+1)*nI]
					}
				}
				b.Lots[a][i] = pos.Lots
			}
		}
	}
	for i := range p.Instruments {
		in := &p.Instruments[i]
		quote, ok := q.Quotes[in.Symbol]
		if ok {
			b.Price[i] = quote.Price
			continue
		}
		targeted := p.Sleeves[in.Sleeve].Target.Sign() > 0 && in.Share.Sign() > 0
		if held[i] || targeted {
			why := "targeted"
			if held[i] {
				why = "held"
			}
			fail(q.File, q.Line, "prices."+in.Symbol, "missing price for %s instrument %s", why, in.Symbol)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return b, nil
}
