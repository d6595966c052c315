package main

import (
	"time"

	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// inputs are the files a check or plan reads; empty names are skipped.
type inputs struct {
	policyFile, holdingsFile, pricesFile string

	policy   *policy.Policy
	holdings *portfolio.Holdings
	prices   *portfolio.Prices
	book     *portfolio.Book
}

// load reads every named file and, when all parse, binds holdings and
// prices to the policy. It returns every problem found, not just the first.
func (in *inputs) load() error {
	var errs strictyaml.Errors
	read := func(name string, parse func(string, []byte) error) {
		if name == "" {
			return
		}
		data, err := inputfile.Read(name, strictyaml.MaxFileSize)
		if err != nil {
			errs = append(errs, &strictyaml.Error{File: name, Msg: err.Error()})
			return
		}
		errs = append(errs, strictyaml.AsErrors(parse(name, data))...)
	}
	read(in.policyFile, func(f string, d []byte) (err error) {
		if in.policy, err = policy.Parse(f, d); err == nil {
			in.policy.LocalZone = time.Local // the shell's zone, the last fallback of the investor's
		}
		return err
	})
	read(in.holdingsFile, func(f string, d []byte) (err error) { in.holdings, err = portfolio.ParseHoldings(f, d); return })
	read(in.pricesFile, func(f string, d []byte) (err error) { in.prices, err = portfolio.ParsePrices(f, d); return })
	if len(errs) == 0 && in.policy != nil && in.holdings != nil {
		prices := in.prices
		if prices == nil { // check -holdings without -prices: bind quantities only
			prices = &portfolio.Prices{File: "(no prices)", Quotes: map[string]portfolio.Quote{}}
		}
		book, err := portfolio.Bind(in.policy, in.holdings, prices)
		if err != nil && in.prices != nil {
			errs = append(errs, strictyaml.AsErrors(err)...)
		} else if err != nil {
			for _, e := range strictyaml.AsErrors(err) {
				if e.File != prices.File { // missing prices are expected here
					errs = append(errs, e)
				}
			}
		}
		in.book = book
	}
	return errs.Err()
}
