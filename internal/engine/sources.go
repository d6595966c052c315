package engine

import (
	"time"

	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// ReadSources reads and validates every policy the configuration names,
// with its holdings file, and checks that the holdings fit the policy. It
// returns every problem at once (file, line, field) and, on success, the
// policies ready for Load. It also returns the directories to watch for
// changes.
func ReadSources(srcs []config.PolicySource) ([]Loaded, []string, error) {
	type pair struct{ policy, holdings string }
	var pairs []pair
	var errs strictyaml.Errors
	dirs := map[string]bool{}
	for _, s := range srcs {
		if s.Dir == "" {
			pairs = append(pairs, pair{s.Policy, s.Holdings})
			dirs[filepath.Dir(s.Policy)] = true
			dirs[filepath.Dir(s.Holdings)] = true
			continue
		}
		dirs[s.Dir] = true
		dirs[s.HoldingsDir] = true
		entries, err := os.ReadDir(s.Dir)
		if err != nil {
			errs = append(errs, &strictyaml.Error{File: s.Dir, Msg: err.Error()})
			continue
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				continue
			}
			pairs = append(pairs, pair{filepath.Join(s.Dir, n), filepath.Join(s.HoldingsDir, n)})
		}
	}
	var out []Loaded
	for _, p := range pairs {
		l, err := readPair(p.policy, p.holdings)
		if err != nil {
			errs = append(errs, strictyaml.AsErrors(err)...)
			continue
		}
		out = append(out, l)
	}
	seen := map[string]string{}
	for _, l := range out {
		if prev, ok := seen[l.Policy.Name]; ok {
			errs = append(errs, &strictyaml.Error{File: l.Policy.File, Line: 1, Field: "policy",
				Msg: fmt.Sprintf("policy %q is also defined in %s", l.Policy.Name, prev)})
		}
		seen[l.Policy.Name] = l.Policy.File
	}
	if err := errs.Err(); err != nil {
		return nil, nil, err
	}
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	sort.Strings(list)
	return out, list, nil
}

func readPair(policyFile, holdingsFile string) (Loaded, error) {
	data, err := inputfile.Read(policyFile, strictyaml.MaxFileSize)
	if err != nil {
		return Loaded{}, &strictyaml.Error{File: policyFile, Msg: err.Error()}
	}
	p, err := policy.Parse(policyFile, data)
	if err != nil {
		return Loaded{}, err
	}
	p.LocalZone = time.Local // the shell's zone, the last fallback of the investor's
	return ReadHoldings(p, holdingsFile)
}

// ReadHoldings reads the holdings file that seeds p's ledger and checks
// that it fits p: accounts and instruments p knows (prices come later,
// from the feeds).
func ReadHoldings(p *policy.Policy, holdingsFile string) (Loaded, error) {
	hdata, err := inputfile.Read(holdingsFile, strictyaml.MaxFileSize)
	if err != nil {
		return Loaded{}, &strictyaml.Error{File: holdingsFile, Msg: fmt.Sprintf("holdings of policy %s: %v", p.Name, err)}
	}
	return HoldingsFor(p, holdingsFile, hdata)
}

// HoldingsFor is ReadHoldings on the bytes of the holdings file.
func HoldingsFor(p *policy.Policy, holdingsFile string, hdata []byte) (Loaded, error) {
	h, err := portfolio.ParseHoldings(holdingsFile, hdata)
	if err != nil {
		return Loaded{}, err
	}
	for _, a := range h.Accounts {
		if _, ok := p.AccountIndex(a.Name); !ok {
			return Loaded{}, &strictyaml.Error{File: holdingsFile, Line: a.Line, Field: "accounts." + a.Name,
				Msg: fmt.Sprintf("policy %s has no account %q", p.Name, a.Name)}
		}
		for _, pos := range a.Positions {
			if _, ok := p.InstrumentIndex(pos.Instrument); !ok && !pos.Quantity.IsZero() {
				return Loaded{}, &strictyaml.Error{File: holdingsFile, Line: pos.Line, Field: "accounts." + a.Name + ".positions." + pos.Instrument,
					Msg: fmt.Sprintf("policy %s has no instrument %q (a held instrument needs a sleeve)", p.Name, pos.Instrument)}
			}
		}
	}
	sum := sha256.Sum256(hdata)
	return Loaded{Policy: p, Holdings: h, HoldingsHash: hex.EncodeToString(sum[:8])}, nil
}
