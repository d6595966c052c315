//go:build race

package plan_test

// raceEnabled is true when the tests run under the race detector, which
// makes them ten to twenty times slower: the random-household tests then
// plan a tenth as many households by default (.ci/run plans the full
// count without it).
const raceEnabled = true
