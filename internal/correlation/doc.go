// Package correlation watches whether a policy's sleeves still diversify
// each other: the rolling Pearson correlation of pairs of sleeves' returns,
// and an alert when one stays above the policy's threshold.
//
// It is pure: no I/O, no clock, no package state. The daemon owns the
// three pieces of data and passes times in:
//
//   - a History of closing prices, one per interval and symbol, bounded to
//     the window (History.Add for every accepted quote; JSON to persist);
//   - a Watch built from the policy (New), whose Evaluate measures every
//     pair from the history at a time;
//   - a State of each pair's alert (JSON to persist), whose Step turns
//     successive measurements into transitions, published as
//     events.Alert (Watch.Alert).
//
// Prices are decimals. Returns are divided to ReturnPlaces places; from
// there on sums, products and the comparisons with the thresholds are
// exact (see Pearson). Only the reported correlation is rounded, to
// ValuePlaces.
package correlation
