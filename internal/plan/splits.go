package plan

import (
	"fmt"
	"strings"
)

// unrestoredSplits lists, with destination target, the leaf sleeves whose
// split between instruments the plan leaves outside its tolerance
// (bands.within_sleeve; the test split applies to the desired value,
// here to the sleeve's value after the plan) where something stops its
// restoration (splitBlocked), so that it is said, not silent. A sleeve
// already listed gets the split added to its reason. A split the polish
// chose to leave, because a plan without the restoring orders rates as
// well on the sleeves with fewer orders, is not listed
// (docs/PLANNING.md), nor a sleeve the plan harvests in.
func (pl *planner) unrestoredSplits(out *Plan) {
	p := pl.p
	// Only the wash-sale guard and lots the tax rules hold back stop a
	// restoration (splitBlocked): without either, nothing is listed, and
	// nothing need be figured.
	if len(pl.heldBackList) == 0 && !pl.washBlocks() {
		return
	}
	var value []num // per instrument, after the plan
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		if !ps.Leaf() || si == p.Cash || len(ps.Instruments) < 2 || pl.harvests(si) {
			continue
		}
		if value == nil {
			value = pl.valuesAfter()
		}
		w := pl.numOf(pl.after[si])
		if w.Sign() <= 0 {
			continue
		}
		tol := pl.fixed().tol[si]
		var off []string
		for _, i := range ps.Instruments {
			if !pl.splitOff(i, value[i], w, tol) {
				continue
			}
			off = append(off, fmt.Sprintf("%s is %s of it against a share of %s", p.Instruments[i].Symbol,
				percentText(value[i].dec().DivRound(w.dec(), 4)), percentText(p.Instruments[i].Share)))
		}
		if len(off) == 0 {
			continue
		}
		blocked := pl.splitBlocked(si, value, w, tol)
		if blocked == "" {
			continue
		}
		why := fmt.Sprintf("its split between instruments is outside the tolerance of %s of each share (bands.within_sleeve) after the plan: %s; %s",
			percentText(ps.SplitTolerance()), strings.Join(off, ", "), blocked)
		listed := false
		for k := range out.Unresolved {
			if u := &out.Unresolved[k]; u.Sleeve == ps.Path {
				u.Reason += "; " + why
				listed = true
			}
		}
		if !listed {
			out.Unresolved = append(out.Unresolved, Unresolved{Sleeve: ps.Path, WeightAfter: out.Sleeves[si].WeightAfter, Reason: why})
		}
	}
}

// washBlocks reports whether the wash-sale guard keeps any instrument
// from being bought.
func (pl *planner) washBlocks() bool {
	for i := range pl.p.Instruments {
		if !pl.mayBuy(i) {
			return true
		}
	}
	return false
}

// harvests reports whether the plan harvests a loss in leaf sleeve si:
// its substitute moves the split on purpose.
func (pl *planner) harvests(si int) bool {
	for k := range pl.orders {
		if o := &pl.orders[k]; o.Rule == RuleHarvest && pl.p.Instruments[o.instrument].Sleeve == si {
			return true
		}
	}
	return false
}

// valuesAfter returns the household's value of each instrument after the
// orders.
func (pl *planner) valuesAfter() []num {
	value := make([]num, pl.nI)
	for i := range value {
		value[i] = pl.fixed().held[i]
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if n := pl.numOf(o.Notional); o.Side == Buy {
			value[o.instrument] = value[o.instrument].Add(n)
		} else {
			value[o.instrument] = value[o.instrument].Sub(n)
		}
	}
	return value
}

// splitOff reports whether instrument i, worth value after the plan, lies
// outside the tolerance tol of its share of its sleeve's value w:
// |value - w x share| > tol x w x share.
func (pl *planner) splitOff(i int, value, w, tol num) bool {
	share := w.Mul(pl.fixed().share[i])
	return value.Sub(share).Abs().GreaterThan(tol.Mul(share))
}

// splitBlocked says what stops the restoration of leaf sleeve si's split
// (sleeve value w after the plan, tolerance tol), or "" when nothing
// does: the wash-sale rule keeps an instrument under its share from being
// bought, or an instrument over its share cannot be sold (the tax rules
// hold its lots back). Rounding to whole steps is not listed, as it is
// not for sleeves with destination target.
func (pl *planner) splitBlocked(si int, value []num, w, tol num) string {
	p := pl.p
	for _, i := range p.Sleeves[si].Instruments {
		if !pl.splitOff(i, value[i], w, tol) {
			continue
		}
		sym := p.Instruments[i].Symbol
		under := value[i].LessThan(w.Mul(pl.fixed().share[i]))
		switch {
		case under && !pl.mayBuy(i):
			return fmt.Sprintf("the wash-sale rule keeps %s from being bought", sym)
		case !under:
			if why := pl.heldBackReason(i); why != "" {
				return fmt.Sprintf("%s cannot be sold: %s", sym, why)
			}
		}
	}
	return ""
}
