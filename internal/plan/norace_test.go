//go:build !race

package plan_test

// raceEnabled is true when the tests run under the race detector.
const raceEnabled = false
