// Package partition maps households to partitions: the unit that the
// instances of a partitioned high-availability group hold leases on
// (docs/SCALING.md, "Several instances").
//
// The function is part of the on-the-wire contract between instances and
// must never change: instances of different versions in one group must
// agree on which partition a household is in, or two of them could plan
// it. It is FNV-1a (32 bits) of the household's name, modulo the number
// of partitions: the same function as nats-server's subject mapping
// {{partition(n,k)}} over the one token k holding the name, so that an
// operator can route a household's subjects by partition with NATS' own
// mappings (for example to count reports per partition).
package partition

import "hash/fnv"

// Max is the largest number of partitions a group may have.
const Max = 4096

// Of returns the partition of household name among n partitions, from 0
// to n-1 (0 when n < 2).
func Of(name string, n int) int {
	if n < 2 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int(h.Sum32() % uint32(n))
}

// Target is how many partitions each of live instances aims to hold:
// ceil(n / live), at least 1 while there is any partition.
func Target(n, live int) int {
	if live < 1 {
		live = 1
	}
	return (n + live - 1) / live
}
