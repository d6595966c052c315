package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// TaxRules are a policy's tax block: how sales and buys in taxable
// accounts are chosen, and the calendar their dates are counted in.
//
//	tax:
//	  time_zone: America/New_York     # trade dates; default the investor's zone
//	  short_term_gains: block         # or allow (the default)
//	  wait_long_term_days: 30         # hold back lots long-term within 30 days
//	  wash_sale:
//	    window: 30                    # days before and after a loss sale (default 30)
//	    windows: {equities/intl: 61}  # per sleeve and everything below it
//	    exempt: [crypto]              # sleeves the guard does not apply to
//	    substitute_groups: [[VTI, ITOT]]
//	  harvest:
//	    enabled: true
//	    min_loss: "500"               # currency; and/or
//	    min_loss_pct: 5%              # of the lot's cost basis
//	    substitutes: {VXUS: IXUS}     # an instrument of the same sleeve
//	  withdrawals:
//	    order: [taxable, traditional_ira, roth_ira]  # account names or types
//	    ordinary_income_rate: 24%     # tax-deferred distributions, short-term gains
//	    long_term_gains_rate: 15%
//	    short_term_gains_rate: 24%    # default: ordinary_income_rate
//	    penalty_exempt: [457b]        # types without the 10% additional tax
//	    by: tax                       # taxable: least tax first; default allocation
//
// Sleeves are named by path, instruments by symbol, both as the policy
// lists them; package tax documents the options (tax.Options).
type TaxRules struct {
	tax.Options
	// Withdrawals are the rules of tax-aware withdrawals (withdrawals:).
	Withdrawals Withdrawals
	// Zone is the time zone of time_zone, in which the trade date of a
	// plan is taken from the time of its prices: holding periods and
	// wash-sale windows count calendar days there. ZoneSet says whether
	// the block gives one; without it the investor's zone applies
	// (Policy.TradeZone).
	Zone    *time.Location
	ZoneSet bool
	Line    int
}

// Location is one entry of the asset_location block: the accounts in which
// buys of a sleeve's instruments are placed first.
//
//	asset_location:
//	  bonds: [k401, traditional_ira]  # account names or account types
//	  crypto/growth: [roth]
//
// An item is an account name or, when no account has that name, an
// account type standing for every account of that type in file order.
type Location struct {
	// Sleeve is the index into Policy.Sleeves of the sleeve; the entry
	// applies to every sleeve below it that has no entry of its own.
	Sleeve int
	// Accounts are indices into Policy.Accounts, most preferred first.
	Accounts []int
	Line     int
}

// PreferredAccounts returns the accounts in which buys of instruments of
// sleeve si go first, most preferred first: those of the asset_location
// entry of si or, without one, of its nearest ancestor that has one. It
// returns nil when no entry applies.
func (p *Policy) PreferredAccounts(si int) []int {
	for x := si; x >= 0; x = p.Sleeves[x].Parent {
		for k := range p.AssetLocation {
			if p.AssetLocation[k].Sleeve == x {
				return p.AssetLocation[k].Accounts
			}
		}
	}
	return nil
}

// tax reads the optional tax block; n is nil when absent.
func (c *compiler) tax(n *yaml.Node) {
	if n == nil {
		return
	}
	r, p := c.r, c.p
	t := &TaxRules{Line: n.Line}
	// nodes maps the field names of tax.Options.Validate's messages to
	// the nodes they were read from, for the line of each problem.
	nodes := map[string]*yaml.Node{}
	f := r.Object(n, "tax", "time_zone", "short_term_gains", "wait_long_term_days", "wash_sale", "harvest", "withdrawals")
	t.Withdrawals = c.withdrawals(f["withdrawals"])
	if v, ok := f["time_zone"]; ok {
		t.Zone, t.ZoneSet = c.zone(v, "tax.time_zone")
	}
	if v, ok := f["short_term_gains"]; ok {
		nodes["short_term_gains"] = v
		if s, ok := r.String(v, "tax.short_term_gains"); ok {
			t.ShortTermGains = tax.ShortTermGains(s)
		}
	}
	if v, ok := f["wait_long_term_days"]; ok {
		nodes["wait_long_term_days"] = v
		t.WaitLongTermDays, _ = c.days(v, "tax.wait_long_term_days")
	}
	if v, ok := f["wash_sale"]; ok {
		c.washSale(v, &t.WashSale, nodes)
	}
	if v, ok := f["harvest"]; ok {
		nodes["harvest"] = v
		c.harvest(v, &t.Harvest, nodes)
	}
	if err := t.Validate(); err != nil {
		var list []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		} else {
			list = []error{err}
		}
		for _, e := range list {
			field, msg, _ := strings.Cut(e.Error(), ": ")
			at := nodes[field]
			if at == nil {
				at = n
			}
			r.Errorf(at, strictyaml.Join("tax", field), "%s", msg)
		}
	}
	p.Tax = t
}

// days reads a whole number of days (its sign is checked by Validate).
func (c *compiler) days(n *yaml.Node, field string) (int, bool) {
	d, ok := c.r.Decimal(n, field)
	if !ok {
		return 0, false
	}
	if !d.IsInteger() || d.Abs().GreaterThan(maxDays) {
		c.r.Errorf(n, field, "want a whole number of days up to %s, got %s", maxDays, d)
		return 0, false
	}
	return int(d.IntPart()), true
}

// maxDays bounds the day counts of the tax block: about ten years.
var maxDays = decimal.NewFromInt(3660)

// washSale reads tax.wash_sale.
func (c *compiler) washSale(n *yaml.Node, w *tax.WashSale, nodes map[string]*yaml.Node) {
	r := c.r
	f := r.Object(n, "tax.wash_sale", "window", "windows", "exempt", "substitute_groups")
	if v, ok := f["window"]; ok {
		nodes["wash_sale.window"] = v
		w.Window, _ = c.days(v, "tax.wash_sale.window")
	}
	if v, ok := f["windows"]; ok {
		w.Windows = map[string]int{}
		for _, e := range r.Entries(v, "tax.wash_sale.windows") {
			field := strictyaml.Join("tax.wash_sale.windows", e.Key)
			nodes["wash_sale.windows."+e.Key] = e.Value
			if c.sleeveRef(e.KeyNode, field, e.Key) {
				if d, ok := c.days(e.Value, field); ok {
					w.Windows[e.Key] = d
				}
			}
		}
	}
	if v, ok := f["exempt"]; ok {
		nodes["wash_sale.exempt"] = v
		for _, item := range r.Sequence(v, "tax.wash_sale.exempt") {
			if s, ok := r.String(item, "tax.wash_sale.exempt"); ok && c.sleeveRef(item, "tax.wash_sale.exempt", s) {
				w.Exempt = append(w.Exempt, s)
			}
		}
	}
	if v, ok := f["substitute_groups"]; ok {
		for g, group := range r.Sequence(v, "tax.wash_sale.substitute_groups") {
			field := fmt.Sprintf("wash_sale.substitute_groups[%d]", g)
			nodes[field] = group
			var members []string
			errs := len(r.Errs)
			for _, item := range r.Sequence(group, "tax."+field) {
				if s, ok := r.String(item, "tax."+field); ok && c.instrumentRef(item, "tax."+field, s) {
					members = append(members, s)
				}
			}
			if len(r.Errs) == errs { // else reported, and Validate would only repeat it
				w.SubstituteGroups = append(w.SubstituteGroups, members)
			}
		}
	}
}

// harvest reads tax.harvest.
func (c *compiler) harvest(n *yaml.Node, h *tax.Harvest, nodes map[string]*yaml.Node) {
	r, p := c.r, c.p
	f := r.Object(n, "tax.harvest", "enabled", "min_loss", "min_loss_pct", "substitutes")
	if v, ok := f["enabled"]; ok {
		if s, ok := r.Scalar(v, "tax.harvest.enabled"); ok {
			switch {
			case v.Tag == "!!bool" && s == "true":
				h.Enabled = true
			case v.Tag == "!!bool" && s == "false":
			default:
				r.Errorf(v, "tax.harvest.enabled", "want true or false, got %q", s)
			}
		}
	}
	if v, ok := f["min_loss"]; ok {
		nodes["harvest.min_loss"] = v
		h.MinLoss, _ = r.Decimal(v, "tax.harvest.min_loss")
	}
	if v, ok := f["min_loss_pct"]; ok {
		nodes["harvest.min_loss_pct"] = v
		h.MinLossPct, _ = r.Percent(v, "tax.harvest.min_loss_pct", false)
	}
	if v, ok := f["substitutes"]; ok {
		nodes["harvest.substitutes"] = v
		h.Substitutes = map[string]string{}
		for _, e := range r.Entries(v, "tax.harvest.substitutes") {
			field := strictyaml.Join("tax.harvest.substitutes", e.Key)
			nodes["harvest.substitutes."+e.Key] = e.Value
			sub, ok := r.String(e.Value, field)
			if !ok || !c.instrumentRef(e.KeyNode, field, e.Key) || !c.instrumentRef(e.Value, field, sub) {
				continue
			}
			i, _ := p.InstrumentIndex(e.Key)
			j, _ := p.InstrumentIndex(sub)
			if si, sj := p.Instruments[i].Sleeve, p.Instruments[j].Sleeve; si >= 0 && sj >= 0 && si != sj {
				r.Errorf(e.Value, field, "%s fills sleeve %q, %s fills %q: a substitute must fill the same sleeve, so that harvesting keeps the sleeve's weight",
					sub, p.Sleeves[sj].Path, e.Key, p.Sleeves[si].Path)
				continue
			}
			h.Substitutes[e.Key] = sub
		}
	}
}

// sleeveRef reports whether path names a sleeve of targets, reporting it
// at n when it does not.
func (c *compiler) sleeveRef(n *yaml.Node, field, path string) bool {
	if _, ok := c.p.sleeveIndex[path]; ok {
		return true
	}
	if len(c.p.Sleeves) > 0 {
		c.r.Errorf(n, field, "no sleeve %q in targets (known: %s)", path, c.knownSleeves())
	}
	return false
}

// instrumentRef reports whether symbol names an instrument of the policy,
// reporting it at n when it does not.
func (c *compiler) instrumentRef(n *yaml.Node, field, symbol string) bool {
	if _, ok := c.p.instrumentIndex[symbol]; ok {
		return true
	}
	c.r.Errorf(n, field, "no instrument %q in instruments", symbol)
	return false
}

// assetLocation reads the optional asset_location block; n is nil when
// absent.
func (c *compiler) assetLocation(n *yaml.Node) {
	if n == nil {
		return
	}
	r, p := c.r, c.p
	entries := r.Entries(n, "asset_location")
	p.AssetLocation = make([]Location, 0, len(entries))
	for _, e := range entries {
		field := strictyaml.Join("asset_location", e.Key)
		if !c.sleeveRef(e.KeyNode, field, e.Key) {
			continue
		}
		si := p.sleeveIndex[e.Key]
		if si == p.Cash {
			r.Errorf(e.KeyNode, field, "the cash sleeve is never bought: it needs no location")
			continue
		}
		loc := Location{Sleeve: si, Line: e.KeyNode.Line}
		seen := map[int]bool{}
		for _, item := range r.Sequence(e.Value, field) {
			s, ok := r.String(item, field)
			if !ok {
				continue
			}
			if c.modelOnly {
				continue // names the accounts of households: checked with each
			}
			accounts := c.accountsNamed(s)
			if len(accounts) == 0 {
				r.Errorf(item, field, "%q is neither an account nor the type of one (accounts: %s)", s, c.accountNames())
				continue
			}
			for _, a := range accounts {
				if seen[a] {
					r.Errorf(item, field, "account %s is listed twice", p.Accounts[a].Name)
					continue
				}
				seen[a] = true
				loc.Accounts = append(loc.Accounts, a)
			}
		}
		if len(loc.Accounts) == 0 {
			if c.modelOnly {
				continue
			}
			if len(r.Sequence(e.Value, field)) == 0 && e.Value != nil && e.Value.Kind == yaml.SequenceNode {
				r.Errorf(e.Value, field, "want at least one account")
			}
			continue
		}
		p.AssetLocation = append(p.AssetLocation, loc)
	}
}

// accountsNamed returns the account named s or, when there is none, the
// accounts of type s, in file order.
func (c *compiler) accountsNamed(s string) []int {
	p := c.p
	if a, ok := p.accountIndex[s]; ok {
		return []int{a}
	}
	var out []int
	for a := range p.Accounts {
		if string(p.Accounts[a].Type) == s {
			out = append(out, a)
		}
	}
	return out
}

// accountNames lists the accounts' names for a message.
func (c *compiler) accountNames() string {
	names := make([]string, len(c.p.Accounts))
	for a := range c.p.Accounts {
		names[a] = c.p.Accounts[a].Name
	}
	return strings.Join(names, ", ")
}

// Withdrawals are the rules of tax-aware withdrawals: which account pays
// first, and the rates that estimate the tax of a withdrawal.
type Withdrawals struct {
	// Order lists the accounts a withdrawal that names none comes from,
	// most preferred first: every account of the policy, by default the
	// taxable ones, then the tax-deferred ones, then Roth, HSA and 529
	// accounts, each group in file order.
	Order []int
	// OrdinaryRate taxes distributions from tax-deferred accounts (and
	// short-term gains unless ShortTermRate is set); LongTermRate taxes
	// long-term gains. Zero when not set: the estimate is then 0 for that
	// part, and the plan says the rate is missing.
	OrdinaryRate, LongTermRate, ShortTermRate decimal.Decimal
	HasOrdinary, HasLongTerm, HasShortTerm    bool
	// ByTax makes a withdrawal from a taxable account sell the positions
	// whose lots cost the least tax per currency unit raised, whatever the
	// allocation (by: tax); by default the most overweight sleeves give.
	ByTax bool
	// PenaltyExempt are the account types whose distributions before age
	// 59½ carry no 10% additional tax (26 U.S.C. §72(t) does not apply to
	// governmental 457(b) plans: 457b by default).
	PenaltyExempt []AccountType
}

// TaxDeferred reports whether distributions from accounts of type t are
// ordinary income in full: traditional, SEP and SIMPLE IRAs, traditional
// 401(k), 403(b) and 457(b) plans.
func (t AccountType) TaxDeferred() bool {
	switch t {
	case AccountTraditionalIRA, AccountSEPIRA, AccountSimpleIRA, AccountTraditional401k, Account403b, Account457b:
		return true
	}
	return false
}

// withdrawalRank orders account types for withdrawals: taxable, then
// tax-deferred, then the others (Roth, HSA, 529).
func withdrawalRank(t AccountType) int {
	switch {
	case t == AccountTaxable:
		return 0
	case t.TaxDeferred():
		return 1
	}
	return 2
}

// withdrawals reads tax.withdrawals; n is nil when absent. It needs the
// accounts, read before the tax block.
func (c *compiler) withdrawals(n *yaml.Node) Withdrawals {
	r, p := c.r, c.p
	w := Withdrawals{PenaltyExempt: []AccountType{Account457b}}
	const field = "tax.withdrawals"
	f := map[string]*yaml.Node{}
	if n != nil {
		f = r.Object(n, field, "order", "ordinary_income_rate", "long_term_gains_rate", "short_term_gains_rate", "penalty_exempt", "by")
	}
	if v, ok := f["by"]; ok {
		if s, ok := r.String(v, field+".by"); ok {
			switch s {
			case "allocation":
			case "tax":
				w.ByTax = true
			default:
				r.Errorf(v, field+".by", "want allocation (the most overweight sleeves give) or tax (the least tax), got %q", s)
			}
		}
	}
	for _, rate := range []struct {
		key string
		d   *decimal.Decimal
		has *bool
	}{{"ordinary_income_rate", &w.OrdinaryRate, &w.HasOrdinary}, {"long_term_gains_rate", &w.LongTermRate, &w.HasLongTerm}, {"short_term_gains_rate", &w.ShortTermRate, &w.HasShortTerm}} {
		if v, ok := f[rate.key]; ok {
			*rate.d, *rate.has = r.Percent(v, strictyaml.Join(field, rate.key), true)
		}
	}
	if v, ok := f["penalty_exempt"]; ok {
		w.PenaltyExempt = nil
		for _, item := range r.Sequence(v, field+".penalty_exempt") {
			if s, ok := r.String(item, field+".penalty_exempt"); ok {
				if !containsType(AccountTypes, AccountType(s)) {
					r.Errorf(item, field+".penalty_exempt", "%q is not an account type (%s)", s, typeNames())
					continue
				}
				w.PenaltyExempt = append(w.PenaltyExempt, AccountType(s))
			}
		}
	}
	if v, ok := f["order"]; ok {
		seen := map[int]bool{}
		for _, item := range r.Sequence(v, field+".order") {
			s, ok := r.String(item, field+".order")
			if !ok {
				continue
			}
			if a, ok := p.accountIndex[s]; ok {
				if !seen[a] {
					w.Order, seen[a] = append(w.Order, a), true
				}
				continue
			}
			if !containsType(AccountTypes, AccountType(s)) {
				if c.modelOnly {
					continue // may name the accounts of households: checked with each
				}
				r.Errorf(item, field+".order", "%q is neither an account nor an account type", s)
				continue
			}
			for a := range p.Accounts {
				if p.Accounts[a].Type == AccountType(s) && !seen[a] {
					w.Order, seen[a] = append(w.Order, a), true
				}
			}
		}
		// The accounts not listed come last, in the default order.
		for _, a := range defaultOrder(p) {
			if !seen[a] {
				w.Order = append(w.Order, a)
			}
		}
	} else {
		w.Order = defaultOrder(p)
	}
	return w
}

// WithdrawalOrder returns the accounts a withdrawal that names none comes
// from, most preferred first: tax.withdrawals.order, or by default the
// taxable accounts, then the tax-deferred ones, then the others (Roth,
// HSA, 529), each group in file order.
func (p *Policy) WithdrawalOrder() []int {
	if p.Tax != nil && len(p.Tax.Withdrawals.Order) == len(p.Accounts) {
		return p.Tax.Withdrawals.Order
	}
	return defaultOrder(p)
}

// defaultOrder returns the accounts in the default order of withdrawals.
func defaultOrder(p *Policy) []int {
	var out []int
	for rank := 0; rank < 3; rank++ {
		for a := range p.Accounts {
			if withdrawalRank(p.Accounts[a].Type) == rank {
				out = append(out, a)
			}
		}
	}
	return out
}

func containsType(ts []AccountType, t AccountType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// typeNames lists the account types for messages.
func typeNames() string {
	names := make([]string, len(AccountTypes))
	for i, t := range AccountTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// TradeZone returns the zone trade dates are counted in: tax.time_zone
// when given, else the investor's zone (Zone).
func (p *Policy) TradeZone() *time.Location {
	if p.Tax != nil && p.Tax.ZoneSet {
		return p.Tax.Zone
	}
	loc, _ := p.Zone()
	return loc
}
