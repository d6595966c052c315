// Package shortlist shortens lists of names and ids for log lines, errors
// and the health endpoints, so that a flood of inputs (5,000 fills for
// unknown orders, thousands of refused instruments) cannot make one line
// or one response grow without bound. The full counts stay in the metrics.
package shortlist

import (
	"fmt"
	"strings"
)

// Max is how many items the lists of log lines and endpoints show.
const Max = 10

// First returns the first n items of list and, when it has more, a last
// item "… and N more".
func First(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	out := make([]string, n, n+1)
	copy(out, list[:n])
	return append(out, fmt.Sprintf("… and %d more", len(list)-n))
}

// Join joins the first n items of list with sep, followed by "… and N
// more" when it has more.
func Join(list []string, n int, sep string) string {
	return strings.Join(First(list, n), sep)
}
