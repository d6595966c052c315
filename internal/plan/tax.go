package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// TaxReport is the tax side of a tax-aware plan: the estimated gains and
// losses its sells realize in taxable accounts, and what the tax rules
// kept out of it. Amounts are exact (see tax.Gains); round them for
// display only.
type TaxReport struct {
	// TradeDate is the date holding periods and wash-sale windows are
	// counted to.
	TradeDate tax.Date `json:"trade_date"`
	// Gains sums the gains of the plan's sells in taxable accounts whose
	// lots are known. Sells in tax-advantaged accounts realize none.
	Gains        tax.Gains       `json:"gains"`
	NetShortTerm decimal.Decimal `json:"net_short_term"`
	NetLongTerm  decimal.Decimal `json:"net_long_term"`
	Net          decimal.Decimal `json:"net"`
	// BasisUnknown lists, as account/instrument, the sells in taxable
	// accounts of positions given without lots: their gains are unknown
	// and not in Gains. The gains are complete when it is empty.
	BasisUnknown []string `json:"basis_unknown,omitempty"`
	// HeldBack lists the positions of which the plan would have sold more
	// had the tax rules allowed it.
	HeldBack []HeldBack `json:"held_back,omitempty"`
	// WashSale lists the instruments the wash-sale guard kept the plan
	// from buying.
	WashSale []KeptOut `json:"wash_sale,omitempty"`
	// Disallowed sums what the wash-sale rule disallows of the losses of
	// the plan's sells (each order's WashSale says which purchases replace
	// which shares); nil when nothing is. Gains count only what is
	// allowed.
	Disallowed *tax.Wash `json:"wash_sale_disallowed,omitempty"`
	// NotRelocated lists the instruments the plan did not relocate (buy
	// in one account, sell in another) because the sale would be at a
	// loss within the wash-sale window of the buy, and why.
	NotRelocated []NotRelocated `json:"not_relocated,omitempty"`
}

// NotRelocated is an instrument the plan kept from relocating.
type NotRelocated struct {
	Instrument string `json:"instrument"`
	Reason     string `json:"reason"`
}

// HeldBack is a position of a taxable account of which the tax rules kept
// the plan from selling as much as it wanted.
type HeldBack struct {
	Account    string `json:"account"`
	Instrument string `json:"instrument"`
	// Quantity is what the plan wanted to sell but did not (rounded up to
	// the instrument's step, at most what is held beyond the plan's sell).
	Quantity decimal.Decimal `json:"quantity"`
	// Reason is tax.Selection.Reason of selling the planned quantity plus
	// Quantity.
	Reason string `json:"reason"`
}

// KeptOut is an instrument the wash-sale guard kept the plan from buying.
type KeptOut struct {
	Instrument string `json:"instrument"`
	Sleeve     string `json:"sleeve"`
	Reason     string `json:"reason"`
	// MovedTo are the instruments of the sleeve that got its share
	// instead; none when the sleeve has no other (it is then unresolved).
	MovedTo []string `json:"moved_to,omitempty"`
}

// taxState is what a tax-aware plan computes once, whatever the number of
// passes: the options, the trade date, the lots and the sales caps, and
// the instruments kept out of buys and relocations, which only grow from
// one pass to the next.
type taxState struct {
	opts    tax.Options
	date    tax.Date
	hist    tax.History
	taxable []bool     // per account
	lots    []tax.Lots // [a*nI+i]; nil when the holdings give none
	class   []string   // per instrument: its sleeve's path
	// capQty is, per [a*nI+i] of a taxable position with lots, the
	// quantity the tax rules let the plan sell (tax.Lots.Sellable); capped
	// says which positions it limits (less than held).
	capQty []decimal.Decimal
	capped []bool
	// blocked is, per instrument, the wash-sale block that keeps it from
	// being bought; noReloc says which instruments may not relocate.
	blocked []tax.WashBlock
	noReloc []bool
	// relocWhy says, per instrument kept from relocating, why.
	relocWhy []string
	// lotBuys are the acquisitions the lots record within the longest
	// wash-sale window, computed once when harvesting needs them.
	lotBuys []tax.Trade
}

// newTaxState returns the tax state of a plan of s, or nil when the plan
// is not tax-aware: the policy has no tax block and the holdings give no
// lots.
func newTaxState(s *drift.Snapshot, o Options) *taxState {
	b := s.Book
	p := b.Policy
	if p.Tax == nil && b.Lots == nil {
		return nil
	}
	nA, nI := len(p.Accounts), len(p.Instruments)
	tx := &taxState{
		date:     o.Date,
		hist:     o.History,
		taxable:  make([]bool, nA),
		class:    make([]string, nI),
		blocked:  make([]tax.WashBlock, nI),
		noReloc:  make([]bool, nI),
		relocWhy: make([]string, nI),
	}
	if p.Tax != nil {
		tx.opts = p.Tax.Options
	}
	if tx.date.IsZero() {
		// The investor's day: a 21:00 New York sale is that day's.
		tx.date = tax.DateOf(s.AsOf.In(p.TradeZone()))
	}
	for a := range p.Accounts {
		tx.taxable[a] = !p.Accounts[a].Type.TaxAdvantaged()
	}
	for i := range p.Instruments {
		tx.class[i] = p.Sleeves[p.Instruments[i].Sleeve].Path
		tx.blocked[i] = tx.opts.WashSale.CheckBuy(tx.hist, tax.Buy{Instrument: p.Instruments[i].Symbol, Class: tx.class[i], Date: tx.date})
	}
	if b.Lots == nil {
		return tx
	}
	tx.lots = make([]tax.Lots, nA*nI)
	tx.capQty = make([]decimal.Decimal, nA*nI)
	tx.capped = make([]bool, nA*nI)
	for a := 0; a < nA; a++ {
		for i := 0; i < nI; i++ {
			l := b.Lots[a][i]
			k := a*nI + i
			tx.lots[k] = l
			if !tx.taxable[a] || l.Len() == 0 || b.Price[i].Sign() <= 0 {
				continue
			}
			// Sellable fails only on a price that is not positive.
			q, _ := l.Sellable(b.Price[i], tx.date, tx.opts)
			if q.LessThan(b.Qty[a][i]) {
				tx.capQty[k], tx.capped[k] = q, true
			}
		}
	}
	return tx
}

// lotsAt returns the lots of instrument i in account a (none when the
// position was given as a quantity).
func (tx *taxState) lotsAt(a, i, nI int) tax.Lots {
	if tx.lots == nil {
		return tax.Lots{}
	}
	return tx.lots[a*nI+i]
}

// capSales lowers the sellable value of the positions whose lots the tax
// rules hold back to the whole steps of what they may sell, and records
// the value withheld.
func (pl *planner) capSales() {
	tx := pl.tx
	if tx.capped == nil {
		return
	}
	pl.withheld = make([]decimal.Decimal, pl.nA*pl.nI)
	for k, capped := range tx.capped {
		if !capped {
			continue
		}
		i := k % pl.nI
		steps, _ := tx.capQty[k].QuoRem(pl.p.Instruments[i].Step, 0)
		v := pl.timesStep(i, steps).Mul(pl.b.Price[i])
		if v.LessThan(pl.sellable[k]) {
			pl.withheld[k] = pl.sellable[k].Sub(v)
			pl.sellable[k] = v
		}
	}
}

// limit returns the most of instrument i that account a may sell: its
// holding, or less when the tax rules hold lots back.
func (pl *planner) limit(a, i int) decimal.Decimal {
	if k := a*pl.nI + i; pl.tx != nil && pl.tx.capped != nil && pl.tx.capped[k] {
		return pl.tx.capQty[k]
	}
	return pl.b.Qty[a][i]
}

// mayBuy reports whether the plan may buy instrument i: the wash-sale
// guard does not keep it out.
func (pl *planner) mayBuy(i int) bool {
	return pl.tx == nil || !pl.tx.blocked[i].Blocked
}

// mayRelocate reports whether instrument j may be bought in one account
// and sold in another by a relocation.
func (pl *planner) mayRelocate(j int) bool {
	return pl.tx == nil || !pl.tx.blocked[j].Blocked && !pl.tx.noReloc[j]
}

// washRelocation reports whether relocating instrument j from account y
// to account x would be a wash sale: y is taxable and would sell lots at a
// loss, which x's buy of j the same day makes a wash sale unless j's
// sleeve is exempt. It records why j is not relocated.
func (pl *planner) washRelocation(x, y, j int) bool {
	tx := pl.tx
	if !tx.taxable[y] || !tx.lotsAt(y, j, pl.nI).SellsAtLossFirst(pl.b.Price[j]) {
		return false
	}
	sym := pl.p.Instruments[j].Symbol
	loss := tax.History{LossSales: []tax.Trade{{Instrument: sym, Account: pl.p.Accounts[y].Name, Date: tx.date}}}
	b := tx.opts.WashSale.CheckBuy(loss, tax.Buy{Instrument: sym, Class: tx.class[j], Date: tx.date})
	if b.Blocked && tx.relocWhy[j] == "" {
		tx.relocWhy[j] = fmt.Sprintf("%s would sell %s at a loss while %s buys %s: %s", pl.p.Accounts[y].Name, sym, pl.p.Accounts[x].Name, sym, b.Reason())
	}
	return b.Blocked
}

// keepOut moves the buys of leaf sleeve si's instruments that the
// wash-sale guard blocks to the sleeve's other instruments, so that the
// sleeve still gets its desired value: first by selling less of those
// the plan sells (in instrument order), then by buying more of those
// that may be bought, in proportion to their shares (amounts rounded to
// amountPlaces, the last taking the remainder). When no
// other instrument has a share, the buys go to the harvest substitute of
// the first blocked instrument, when it fills the same sleeve and may be
// bought: what a harvest bought keeps the sleeve's weight until the
// window ends. Otherwise the buys are dropped; keptOutReasons says why.
func (pl *planner) keepOut(si int) {
	p := pl.p
	var extra, shares decimal.Decimal
	var open []int
	sub := -1
	for _, i := range p.Sleeves[si].Instruments {
		switch {
		case !pl.mayBuy(i):
			if pl.buy[i].Sign() > 0 {
				extra = add(extra, pl.buy[i])
				pl.buy[i] = decimal.Decimal{}
				if j, ok := pl.substitute(i); ok && sub < 0 {
					sub = j
				}
			}
		case p.Instruments[i].Share.Sign() > 0:
			open = append(open, i)
			shares = add(shares, p.Instruments[i].Share)
		}
	}
	if extra.Sign() <= 0 {
		return
	}
	for _, j := range p.Sleeves[si].Instruments {
		if pl.sell[j].Sign() > 0 && extra.Sign() > 0 {
			extra = extra.Sub(take(&pl.sell[j], extra))
		}
	}
	if extra.Sign() <= 0 {
		return
	}
	if len(open) == 0 {
		if sub < 0 {
			return
		}
		open, shares = []int{sub}, oneUnit
	}
	given := decimal.Zero
	for k, j := range open {
		part := extra.Sub(given)
		if k < len(open)-1 {
			part = extra.Mul(p.Instruments[j].Share).DivRound(shares, amountPlaces)
		}
		given = given.Add(part)
		pl.buy[j] = add(pl.buy[j], part)
	}
}

// substitute returns the harvest substitute of instrument i when it fills
// the same sleeve and may be bought.
func (pl *planner) substitute(i int) (int, bool) {
	p := pl.p
	sym, ok := pl.tx.opts.Harvest.Substitutes[p.Instruments[i].Symbol]
	if !ok {
		return 0, false
	}
	j, ok := p.InstrumentIndex(sym)
	if !ok || p.Instruments[j].Sleeve != p.Instruments[i].Sleeve || !pl.mayBuy(j) {
		return 0, false
	}
	return j, true
}

// keptOutReasons sets, for each leaf sleeve whose instruments the
// wash-sale guard all keeps out while the plan wanted to buy them, the
// reason it stays short.
func (pl *planner) keptOutReasons(gap []string) {
	p := pl.p
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		if !ps.Leaf() || si == p.Cash || gap[si] != "" || len(ps.Instruments) == 0 {
			continue
		}
		var first tax.WashBlock
		all := true
		for _, i := range ps.Instruments {
			if b := pl.tx.blocked[i]; b.Blocked {
				if !first.Blocked {
					first = b
				}
				if _, ok := pl.substitute(i); ok {
					all = false
				}
			} else if p.Instruments[i].Share.Sign() > 0 {
				all = false
			}
		}
		if all && first.Blocked && pl.want[si].GreaterThan(pl.s.Sleeves[si].Value) {
			gap[si] = "no instrument of the sleeve may be bought: " + first.Reason()
		}
	}
}

// locations fixes, per instrument, the accounts of the policy's asset
// location that may hold it, most preferred first.
func (pl *planner) locations() {
	p := pl.p
	if len(p.AssetLocation) == 0 {
		return
	}
	pl.prefer = make([][]int, pl.nI)
	for i := range p.Instruments {
		for _, a := range p.PreferredAccounts(p.Instruments[i].Sleeve) {
			if p.Accounts[a].Allows(i) {
				pl.prefer[i] = append(pl.prefer[i], a)
			}
		}
	}
}

// spendPreferred spends free cash on each instrument's buy in the accounts
// its asset location prefers, in order, within the budget. An account
// keeps the cash that the buys only it could pay for need (instruments
// that no other account with free cash may hold), so that a preference
// never leaves such a buy unfunded.
func (pl *planner) spendPreferred() {
	pl.perAccount()
	for _, i := range pl.buyOrder {
		for _, a := range pl.prefer[i] {
			if pl.buy[i].Sign() <= 0 || pl.budget.Sign() <= 0 {
				break
			}
			if pl.free[a].Sign() <= 0 {
				continue
			}
			spare := pl.free[a].Sub(pl.onlyHere(a, i))
			if spare.Sign() <= 0 {
				continue
			}
			amt := decimal.Min(pl.buy[i], spare, pl.budget)
			k := a*pl.nI + i
			pl.buy[i] = pl.buy[i].Sub(amt)
			pl.buyAt[k] = add(pl.buyAt[k], amt)
			pl.free[a] = pl.free[a].Sub(amt)
			pl.budget = pl.budget.Sub(amt)
		}
	}
}

// onlyHere returns what account a must keep of its free cash for the buys
// other than of instrument i that no other account with free cash may
// hold.
func (pl *planner) onlyHere(a, i int) decimal.Decimal {
	p := pl.p
	return pl.sumOf(pl.nI, func(j int) decimal.Decimal {
		if j == i || pl.buy[j].Sign() <= 0 || !p.Accounts[a].Allows(j) {
			return decimal.Decimal{}
		}
		for x := range p.Accounts {
			if x != a && pl.free[x].Sign() > 0 && p.Accounts[x].Allows(j) {
				return decimal.Decimal{}
			}
		}
		return pl.buy[j]
	})
}

// taxPass names the lots of every sell in a taxable account, then adds
// the harvests, then applies the wash-sale rule to every sell's losses
// (washLosses). A sell whose lots cannot be found is an error: the plan
// must not go out with it.
func (pl *planner) taxPass() error {
	if err := pl.chooseLots(); err != nil {
		return err
	}
	if pl.tx.opts.Harvest.Enabled {
		pl.harvest()
		pl.project()
	}
	pl.washLosses()
	if err := pl.keepLossesAllowed(); err != nil {
		return err
	}
	return pl.keepLossesElsewhere()
}

// washLosses applies the wash-sale rule (tax.WashSale.Match) to the loss
// sales of the plan, in order, with every purchase it knows of: the
// acquisitions the lots record within the window (less the shares the
// plan sells of them), the history's buys that the lots do not record,
// and the plan's own buys. It sets each sell's WashSale and counts in its
// Gains only the loss allowed.
func (pl *planner) washLosses() {
	tx := pl.tx
	var sales []tax.LossSale
	var idx []int
	for k := range pl.orders {
		o := &pl.orders[k]
		o.WashSale = nil
		if o.Side != Sell || o.Lots == nil || !tx.taxable[o.account] {
			continue
		}
		if !realizesLoss(o) {
			continue // no loss to disallow: its Gains stand
		}
		sales = append(sales, tax.LossSale{Account: o.Account, Instrument: o.Instrument, Class: tx.class[o.instrument], Date: tx.date, Sales: o.Lots})
		idx = append(idx, k)
	}
	if len(sales) == 0 {
		return
	}
	washes := tx.opts.WashSale.Match(pl.purchases(), sales)
	for n, k := range idx {
		o := &pl.orders[k]
		o.Gains = tax.GainsOf(o.Lots)
		if w := washes[n]; !w.IsZero() {
			o.WashSale = &w
		}
	}
}

// purchases returns the household's purchases the wash-sale rule matches
// against the plan's loss sales: the lots acquired within the longest
// window before the trade date that replace no earlier loss sale's shares
// (tax.Lot.Replacement, booked by the ledger), less the shares the plan's
// sells take from them (a lot sold is not its own replacement); the history's buys, less
// the lots acquired the same day in the same account (the lots record
// those buys; a buy of unknown quantity on a day a lot records is taken to
// be that lot's); and the plan's buys. Trades in accounts the policy
// calls tax-advantaged are marked so.
func (pl *planner) purchases() []tax.Trade {
	p, tx := pl.p, pl.tx
	since := tx.date.AddDays(-tx.longestWindow())
	var out []tax.Trade
	type key struct {
		account, instrument string
		date                tax.Date
	}
	recorded := map[key]decimal.Decimal{}
	if tx.lots != nil {
		for k, l := range tx.lots {
			a, i := k/pl.nI, k%pl.nI
			for j := 0; j < l.Len(); j++ {
				lot := l.Lot(j)
				if lot.Acquired.Before(since) {
					continue
				}
				kk := key{p.Accounts[a].Name, p.Instruments[i].Symbol, lot.Acquired}
				recorded[kk] = recorded[kk].Add(lot.Quantity)
				if lot.Replacement {
					continue // it replaces an earlier loss sale's shares already
				}
				if q := lot.Quantity.Sub(pl.soldOf(a, i, j)); q.Sign() > 0 {
					out = append(out, tax.Trade{Instrument: kk.instrument, Account: kk.account, Date: lot.Acquired,
						Quantity: q, TaxAdvantaged: !tx.taxable[a]})
				}
			}
		}
	}
	for _, t := range tx.hist.Buys {
		if a, ok := p.AccountIndex(t.Account); ok {
			t.TaxAdvantaged = !tx.taxable[a]
		}
		kk := key{t.Account, t.Instrument, t.Date}
		if rec, ok := recorded[kk]; ok && rec.Sign() > 0 {
			if t.Quantity.Sign() <= 0 {
				recorded[kk] = decimal.Zero
				continue
			}
			used := decimal.Min(rec, t.Quantity)
			recorded[kk] = rec.Sub(used)
			if t.Quantity = t.Quantity.Sub(used); t.Quantity.Sign() <= 0 {
				continue
			}
		}
		out = append(out, t)
	}
	for k := range pl.orders {
		if o := &pl.orders[k]; o.Side == Buy {
			out = append(out, tax.Trade{Instrument: o.Instrument, Account: o.Account, Date: tx.date,
				Quantity: o.Quantity, TaxAdvantaged: !tx.taxable[o.account]})
		}
	}
	return out
}

// soldOf returns the quantity of lot j of instrument i in account a that
// the plan's sells take.
func (pl *planner) soldOf(a, i, j int) decimal.Decimal {
	var q decimal.Decimal
	for k := range pl.orders {
		if o := &pl.orders[k]; o.account == a && o.instrument == i {
			for _, s := range o.Lots {
				if s.Lot == j {
					q = q.Add(s.Quantity)
				}
			}
		}
	}
	return q
}

// keepLossesAllowed selects the lots of a sell again, losses last
// (tax.Options.LossesLast), when the wash-sale rule disallows part of its
// loss for good (its replacement is in a tax-advantaged account): the
// same quantity is sold, so the allocation is the same. The new selection
// is kept when it loses less for good and realizes less in gains more
// than the loss it saves (a gain realized now would be realized later
// anyway; a loss lost is never deducted). A sell whose loss is only
// deferred (its replacement is in a taxable account) keeps its lots: the
// loss lives on in the replacement's basis, and the part allowed is
// deducted now.
func (pl *planner) keepLossesAllowed() error {
	tx := pl.tx
	gains := func(o *Order) decimal.Decimal { return o.Gains.ShortTermGains.Add(o.Gains.LongTermGains) }
	lost := func(o *Order) decimal.Decimal {
		if o.WashSale == nil {
			return decimal.Zero
		}
		return o.WashSale.Permanent
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.WashSale == nil || o.WashSale.Permanent.Sign() <= 0 || o.Rule == RuleHarvest {
			continue
		}
		lots, lostBefore, gainsBefore := o.Lots, lost(o), gains(o)
		opts := tx.opts
		opts.LossesLast = true
		sel, err := tx.lotsAt(o.account, o.instrument, pl.nI).Select(o.Quantity, o.Price, tx.date, opts)
		if err != nil {
			return fmt.Errorf("account %s: sell of %s %s: %w", o.Account, o.Quantity, o.Instrument, err)
		}
		if sel.Unsold().Sign() != 0 {
			continue
		}
		o.Lots, o.Gains = sel.Sales, sel.Gains
		pl.washLosses()
		saved := lostBefore.Sub(lost(o))
		if extra := gains(o).Sub(gainsBefore); saved.Sign() > 0 && extra.LessThan(saved) {
			continue
		}
		o.Lots = lots
		pl.washLosses()
	}
	return nil
}

// chooseLots selects the lots of each sell in a taxable account that has
// none yet (tax.Lots.Select at the order's price on the trade date).
func (pl *planner) chooseLots() error {
	tx := pl.tx
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.Side != Sell || !tx.taxable[o.account] || o.Lots != nil {
			continue
		}
		l := tx.lotsAt(o.account, o.instrument, pl.nI)
		if l.Len() == 0 {
			o.BasisUnknown = true
			continue
		}
		var sel tax.Selection
		var err error
		if ranked, ok := pl.rankedLots(o.account, o.instrument); ok {
			// A withdrawal by least tax sells the lots it ranked.
			sel, err = l.SelectInOrder(ranked, o.Quantity, o.Price, tx.date, tx.opts)
		} else {
			sel, err = l.Select(o.Quantity, o.Price, tx.date, tx.opts)
		}
		if err != nil {
			return fmt.Errorf("account %s: sell of %s %s: %w", o.Account, o.Quantity, o.Instrument, err)
		}
		if sel.Unsold().Sign() != 0 {
			return fmt.Errorf("account %s: sell of %s %s: the lots do not sell it: %s", o.Account, o.Quantity, o.Instrument, sel.Reason())
		}
		o.Lots, o.Gains = sel.Sales, sel.Gains
	}
	return nil
}

// rankedLots returns the lots of instrument i in account a in the order a
// withdrawal by least tax ranked them (leastTax), if it did.
func (pl *planner) rankedLots(a, i int) ([]int, bool) {
	if pl.flow == nil || pl.flow.ranked == nil {
		return nil, false
	}
	r, ok := pl.flow.ranked[a*pl.nI+i]
	return r, ok
}

// realizesLoss reports whether order o is a sell whose lots sell some lot
// at a loss, allowed or disallowed by the wash-sale rule: either way a
// buy within its window is a wash sale.
func realizesLoss(o *Order) bool {
	if o.Side != Sell {
		return false
	}
	for k := range o.Lots {
		if o.Lots[k].Gain.Sign() < 0 {
			return true
		}
	}
	return false
}

// history returns the caller's history with the plan's loss sales and
// buys added, dated the trade date, and the acquisitions the lots record.
func (pl *planner) history(withLots bool) tax.History {
	tx := pl.tx
	h := tax.History{
		LossSales: slices.Clip(tx.hist.LossSales),
		Buys:      slices.Clip(tx.hist.Buys),
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		t := tax.Trade{Instrument: o.Instrument, Account: o.Account, Date: tx.date}
		switch {
		case o.Side == Buy:
			h.Buys = append(h.Buys, t)
		case realizesLoss(o):
			h.LossSales = append(h.LossSales, t)
		}
	}
	if withLots && tx.lots != nil {
		if tx.lotBuys == nil {
			since := tx.date.AddDays(-tx.longestWindow())
			tx.lotBuys = []tax.Trade{}
			for k, l := range tx.lots {
				if l.Len() > 0 {
					a, i := k/pl.nI, k%pl.nI
					tx.lotBuys = append(tx.lotBuys, l.Buys(pl.p.Accounts[a].Name, pl.p.Instruments[i].Symbol, since)...)
				}
			}
		}
		h.Buys = append(h.Buys, tx.lotBuys...)
	}
	return h
}

// longestWindow returns the longest wash-sale window of the options, in
// days.
func (tx *taxState) longestWindow() int {
	w := max(tx.opts.WashSale.Window, tax.DefaultWashSaleWindow)
	for _, d := range tx.opts.WashSale.Windows {
		w = max(w, d)
	}
	return w
}

// harvest adds, for each position of a taxable account with lots worth
// harvesting (tax.HarvestCandidates), a sell of those lots and a buy of
// the substitute with the proceeds, rounded down to its step, in the same
// account. The sell's quantity is that of the candidates rounded down to
// the instrument's step, and its lots are those Select chooses for it:
// losses first. A position is left alone when the plan already trades it,
// trades the substitute in that account (other than by another harvest's
// buy, which grows), buys it or an instrument the guard treats as it in
// any account, or when an order would be below min_trade.
func (pl *planner) harvest() {
	p, tx := pl.p, pl.tx
	if tx.lots == nil {
		return
	}
	for a := 0; a < pl.nA; a++ {
		if !tx.taxable[a] {
			continue
		}
		for i := 0; i < pl.nI; i++ {
			l := tx.lots[a*pl.nI+i]
			sub, ok := tx.opts.Harvest.Substitutes[p.Instruments[i].Symbol]
			if l.Len() == 0 || !ok || pl.hasOrder(a, i) {
				continue
			}
			j, ok := p.InstrumentIndex(sub)
			if !ok || !p.Accounts[a].Allows(j) || !pl.mayBuy(j) || pl.b.Price[j].Sign() <= 0 {
				continue
			}
			pl.harvestOne(a, i, j, l)
		}
	}
}

// harvestOne harvests instrument i's lots l in account a into substitute j.
func (pl *planner) harvestOne(a, i, j int, l tax.Lots) {
	p, tx := pl.p, pl.tx
	existing := -1
	for k := range pl.orders {
		if o := &pl.orders[k]; o.account == a && o.instrument == j {
			if o.Side != Buy || o.Rule != RuleHarvest {
				return
			}
			existing = k
		}
	}
	price := pl.b.Price[i]
	cands, _ := tax.HarvestCandidates(l, p.Instruments[i].Symbol, tx.class[i], price, tx.date, tx.opts, pl.history(true))
	if len(cands) == 0 {
		return
	}
	qty := decimal.Zero
	for k := range cands {
		qty = qty.Add(cands[k].Quantity)
	}
	units, _ := qty.QuoRem(p.Instruments[i].Step, 0)
	qty = pl.timesStep(i, units)
	if units.Sign() <= 0 {
		return
	}
	sel, err := l.Select(qty, price, tx.date, tx.opts)
	if err != nil || sel.Unsold().Sign() != 0 {
		return
	}
	proceeds := qty.Mul(price)
	subUnits, _ := proceeds.QuoRem(pl.unit[j], 0)
	subNotional := subUnits.Mul(pl.unit[j])
	minTrade := p.Rebalance.MinTrade
	if subUnits.Sign() <= 0 || proceeds.LessThan(minTrade) || existing < 0 && subNotional.LessThan(minTrade) {
		return
	}
	pl.orders = append(pl.orders, pl.order(a, i, Sell, units, qty, proceeds, RuleHarvest))
	o := &pl.orders[len(pl.orders)-1]
	o.Lots, o.Gains = sel.Sales, sel.Gains
	if existing >= 0 {
		e := &pl.orders[existing]
		e.units = e.units.Add(subUnits)
		e.Quantity = pl.timesStep(j, e.units)
		e.Notional = e.units.Mul(pl.unit[j])
	} else {
		pl.orders = append(pl.orders, pl.order(a, j, Buy, subUnits, pl.timesStep(j, subUnits), subNotional, RuleHarvest))
	}
	pl.cash[a] = pl.cash[a].Add(proceeds).Sub(subNotional)
}

// washConflicts checks every buy of the plan against the wash-sale guard,
// with the plan's own loss sales added to the history. For each blocked
// buy it keeps the bought instrument out of the next pass, or, when the
// buy or the loss sale is a relocation, keeps both instruments from
// relocating. It reports whether another pass is needed, and an error
// when a buy is blocked that the next pass would not change.
func (pl *planner) washConflicts() (bool, error) {
	tx := pl.tx
	var h tax.History
	haveH := false
	changed := false
	var stuck error
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.Side != Buy {
			continue
		}
		if !haveH {
			h, haveH = pl.history(false), true
		}
		b := tx.opts.WashSale.CheckBuy(h, tax.Buy{Instrument: o.Instrument, Class: tx.class[o.instrument], Date: tx.date})
		if !b.Blocked {
			continue
		}
		by := pl.orderOf(b.By)
		switch {
		case by != nil && (by.Rule == RuleRelocate || o.Rule == RuleRelocate):
			for _, i := range []int{o.instrument, by.instrument} {
				if !tx.noReloc[i] {
					tx.noReloc[i], changed = true, true
					tx.relocWhy[i] = fmt.Sprintf("%s sells %s at a loss while %s buys %s: %s", by.Account, by.Instrument, o.Account, o.Instrument, b.Reason())
				}
			}
		case !tx.blocked[o.instrument].Blocked:
			tx.blocked[o.instrument] = b
			changed = true
		default:
			if stuck == nil {
				stuck = fmt.Errorf("account %s: buy of %s %s: %s", o.Account, o.Quantity, o.Instrument, b.Reason())
			}
		}
	}
	if changed {
		return true, nil
	}
	return false, stuck
}

// orderOf returns the plan's sell that trade t records, or nil when t is
// not one of the plan's.
func (pl *planner) orderOf(t tax.Trade) *Order {
	if t.Date != pl.tx.date {
		return nil
	}
	for k := range pl.orders {
		if o := &pl.orders[k]; o.Side == Sell && o.Account == t.Account && o.Instrument == t.Instrument {
			return o
		}
	}
	return nil
}

// refuse turns the plan into one without orders that says why: an
// inconsistency of the tax rules must not send orders out.
func (pl *planner) refuse(err error) *Plan {
	pl.orders = pl.orders[:0]
	for a := range pl.cash {
		pl.cash[a] = sub(pl.b.Cash[a], pl.p.Accounts[a].Reserve)
	}
	pl.project()
	out := pl.finish()
	out.Unresolved = append(out.Unresolved, Unresolved{
		Sleeve: "", WeightAfter: decimal.Zero,
		Reason: "no order is planned: the tax rules could not be met: " + err.Error(),
	})
	return out
}

// heldBack lists the positions of which the plan wanted to sell more than
// the tax rules let it: what is left of an instrument's sale after
// placement is attributed to its capped positions in the order accounts
// sell.
func (pl *planner) heldBack() []HeldBack {
	tx := pl.tx
	if pl.withheld == nil {
		return nil
	}
	var out []HeldBack
	for i := 0; i < pl.nI; i++ {
		left := pl.sell[i]
		if left.Sign() <= 0 {
			continue
		}
		price := pl.b.Price[i]
		for _, a := range pl.sellOrder {
			k := a*pl.nI + i
			if left.Sign() <= 0 {
				break
			}
			if pl.withheld[k].Sign() <= 0 {
				continue
			}
			part := take(&left, pl.withheld[k])
			planned := decimal.Zero
			for x := range pl.orders {
				if o := &pl.orders[x]; o.account == a && o.instrument == i && o.Side == Sell {
					planned = o.Quantity
				}
			}
			units, rem := part.QuoRem(pl.unit[i], 0)
			if rem.Sign() > 0 {
				units = units.Add(oneUnit)
			}
			qty := decimal.Min(pl.timesStep(i, units), pl.b.Qty[a][i].Sub(planned))
			if qty.Sign() <= 0 {
				continue
			}
			sel, err := tx.lots[k].Select(planned.Add(qty), price, tx.date, tx.opts)
			if err != nil || sel.Reason() == "" {
				continue
			}
			out = append(out, HeldBack{Account: pl.p.Accounts[a].Name, Instrument: pl.p.Instruments[i].Symbol, Quantity: qty, Reason: sel.Reason()})
		}
	}
	return out
}

// report builds the tax report of the plan and keeps its held-back
// positions for the unresolved reasons.
func (pl *planner) report() *TaxReport {
	p, tx := pl.p, pl.tx
	r := &TaxReport{TradeDate: tx.date}
	for k := range pl.orders {
		o := &pl.orders[k]
		switch {
		case o.BasisUnknown:
			r.BasisUnknown = append(r.BasisUnknown, o.Account+"/"+o.Instrument)
		case o.Lots != nil:
			r.Gains = r.Gains.Add(o.Gains)
		}
		if o.WashSale != nil {
			if r.Disallowed == nil {
				r.Disallowed = &tax.Wash{}
			}
			*r.Disallowed = r.Disallowed.Add(*o.WashSale)
		}
	}
	r.NetShortTerm, r.NetLongTerm, r.Net = r.Gains.NetShortTerm(), r.Gains.NetLongTerm(), r.Gains.Net()
	slices.Sort(r.BasisUnknown)
	r.HeldBack = pl.heldBack()
	pl.heldBackList = r.HeldBack
	for i := range p.Instruments {
		b := tx.blocked[i]
		if !b.Blocked {
			continue
		}
		ko := KeptOut{Instrument: p.Instruments[i].Symbol, Sleeve: tx.class[i], Reason: b.Reason()}
		for _, j := range p.Sleeves[p.Instruments[i].Sleeve].Instruments {
			if j != i && pl.mayBuy(j) && p.Instruments[j].Share.Sign() > 0 {
				ko.MovedTo = append(ko.MovedTo, p.Instruments[j].Symbol)
			}
		}
		if j, ok := pl.substitute(i); ok && ko.MovedTo == nil {
			ko.MovedTo = []string{p.Instruments[j].Symbol}
		}
		// Only instruments the plan would have bought are worth a line.
		if pl.wanted(i) {
			r.WashSale = append(r.WashSale, ko)
		}
	}
	for i, why := range tx.relocWhy {
		if why != "" {
			r.NotRelocated = append(r.NotRelocated, NotRelocated{Instrument: p.Instruments[i].Symbol, Reason: why})
		}
	}
	return r
}

// wanted reports whether the plan's desired value of instrument i (its
// share of its sleeve's) is above what the household holds.
func (pl *planner) wanted(i int) bool {
	in := &pl.p.Instruments[i]
	return pl.want[in.Sleeve].Mul(in.Share).GreaterThan(pl.held[i])
}

// heldBackReason returns the reasons the plan sells less of instrument i
// than it wanted, one per held-back position.
func (pl *planner) heldBackReason(i int) string {
	var parts []string
	sym := pl.p.Instruments[i].Symbol
	for _, h := range pl.heldBackList {
		if h.Instrument == sym {
			parts = append(parts, fmt.Sprintf("in %s, %s", h.Account, h.Reason))
		}
	}
	return strings.Join(parts, "; ")
}

// keepLossesElsewhere moves a sell in a taxable account whose loss the
// wash-sale rule disallows for good to another account that holds the
// same instrument, when the allocation stays the same: the household sells
// the same quantity of it. The sell moves alone when its account does not
// need its proceeds; otherwise it moves with the buys it pays for, as the
// asset location moves them (moveBuy), to an account that may hold them
// and that the location does not rank below. Accounts are tried in the
// order of sales (tax-advantaged first). A move is kept, like a new lot
// selection in keepLossesAllowed, when the plan then loses less for good
// and realizes less in gains more than the loss it saves; the loss not
// realized stays in the lots for a later sale. Harvests, relocations and
// cash flows are left alone.
func (pl *planner) keepLossesElsewhere() error {
	if pl.flow != nil {
		return nil
	}
	for x := 0; x < len(pl.orders); x++ {
		o := &pl.orders[x]
		if o.Side != Sell || o.WashSale == nil || o.WashSale.Permanent.Sign() <= 0 || exempt(o.Rule) {
			continue
		}
		lostBefore, gainsBefore := pl.lostForGood(), pl.realized()
		for _, b := range pl.sellOrder {
			if b == pl.orders[x].account {
				continue
			}
			orders, cash := slices.Clone(pl.orders), slices.Clone(pl.cash)
			if pl.moveSale(x, b) {
				if err := pl.relot(); err != nil {
					return err
				}
				lost := pl.lostForGood()
				if saved := lostBefore.Sub(lost); saved.Sign() > 0 && pl.realized().Sub(gainsBefore).LessThan(saved) {
					pl.project()
					x-- // compact removed order x: look at what took its place
					break
				}
			}
			pl.orders, pl.cash = orders, cash
			pl.washLosses()
		}
	}
	return nil
}

// moveSale moves sell order x (instrument i, account a) to account b, as
// keepLossesElsewhere says, and reports whether it moved all of it.
func (pl *planner) moveSale(x, b int) bool {
	o := pl.orders[x]
	a, i := o.account, o.instrument
	if pl.orderOn(b, i, Buy) >= 0 || pl.conflicts(b, i, Sell) || pl.tx.taxable[b] && pl.tx.lotsAt(b, i, pl.nI).Len() == 0 {
		return false // b would sell at an unknown gain
	}
	mayB, _ := pl.limit(b, i).QuoRem(pl.p.Instruments[i].Step, 0)
	if y := pl.orderOn(b, i, Sell); y >= 0 {
		mayB = mayB.Sub(pl.orders[y].units)
	}
	if mayB.LessThan(o.units) {
		return false
	}
	if pl.cash[a].Sub(o.Notional).Sign() >= 0 {
		// a does not need the proceeds: the sell moves alone.
		y := pl.orderOn(b, i, Sell)
		if y < 0 {
			pl.orders = append(pl.orders, pl.order(b, i, Sell, decimal.Zero, decimal.Zero, decimal.Zero, o.Rule))
			y = len(pl.orders) - 1
		}
		pl.addUnits(y, o.units)
		pl.addUnits(x, o.units.Neg())
		pl.cash[a] = pl.cash[a].Sub(o.Notional)
		pl.cash[b] = pl.cash[b].Add(o.Notional)
		return true
	}
	// With the buys of a that its proceeds pay for.
	for k := 0; k < len(pl.orders) && pl.orders[x].units.Sign() > 0; k++ {
		buy := &pl.orders[k]
		if buy.account != a || buy.Side != Buy || buy.units.Sign() <= 0 || exempt(buy.Rule) || pl.ranksBelow(b, a, buy.instrument) {
			continue
		}
		pl.moveBuy(k, x, b)
	}
	return pl.orders[x].units.Sign() <= 0 && pl.cash[a].Sign() >= 0
}

// ranksBelow reports whether the asset location prefers account a to
// account b for instrument i.
func (pl *planner) ranksBelow(b, a, i int) bool {
	if pl.prefer == nil {
		return false
	}
	rank := func(x int) int {
		if r := slices.Index(pl.prefer[i], x); r >= 0 {
			return r
		}
		return len(pl.prefer[i])
	}
	return rank(b) > rank(a)
}

// relot sets the quantities of the orders moves changed, drops those
// left without steps, selects the lots of the sells that have none (or
// whose quantity changed) and applies the wash-sale rule again.
func (pl *planner) relot() error {
	for k := range pl.orders {
		if o := &pl.orders[k]; o.changed && o.Side == Sell {
			o.Lots, o.Gains, o.BasisUnknown, o.WashSale = nil, tax.Gains{}, false, nil
		}
	}
	pl.compact()
	if err := pl.chooseLots(); err != nil {
		return err
	}
	pl.washLosses()
	return nil
}

// lostForGood returns what the wash-sale rule disallows for good of the
// plan's losses.
func (pl *planner) lostForGood() decimal.Decimal {
	var sum decimal.Decimal
	for k := range pl.orders {
		if w := pl.orders[k].WashSale; w != nil {
			sum = sum.Add(w.Permanent)
		}
	}
	return sum
}

// realized returns the gains (not net of losses) the plan's sells realize.
func (pl *planner) realized() decimal.Decimal {
	var sum decimal.Decimal
	for k := range pl.orders {
		g := &pl.orders[k].Gains
		sum = sum.Add(g.ShortTermGains).Add(g.LongTermGains)
	}
	return sum
}
