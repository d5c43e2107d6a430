// Go's stop-the-world "stopping" time, the reference that safepoint's barriers are held to:
// GOMAXPROCS=P, P-1 goroutines spinning in a loop (with a call per unit of work, so they
// poll at function entry, or with -nopoll a tight loop only asynchronous preemption stops),
// and n stop-the-worlds (runtime.ReadMemStats) back to back. It prints the median and p99 of
// /sched/pauses/stopping/other:seconds, whose buckets are about 20 % wide.
//
//	cd tools/go-stw && go run . -procs 8    # Go 1.23: Debian bookworm-backports golang-1.23-go
package main

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/metrics"
	"time"
)

//go:noinline
func unit(x uint64) uint64 {
	for i := 0; i < 96; i++ {
		x = x*6364136223846793005 + 1
	}
	return x
}

var sink [64]uint64

func main() {
	procs := flag.Int("procs", 4, "GOMAXPROCS")
	n := flag.Int("n", 2000, "STWs")
	tight := flag.Bool("nopoll", false, "tight loops without calls (async preemption only)")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	for i := 0; i < *procs-1; i++ {
		go func(i int) {
			x := uint64(i)
			if *tight {
				for {
					x = x*6364136223846793005 + 1
					if x == 42 {
						sink[i] = x
					}
				}
			}
			for {
				x = unit(x)
				sink[i&63] = x
			}
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	var ms runtime.MemStats
	for i := 0; i < *n; i++ {
		runtime.ReadMemStats(&ms) // one stop-the-world ("read mem stats")
	}
	s := []metrics.Sample{{Name: "/sched/pauses/stopping/other:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	q := func(p float64) float64 {
		var total uint64
		for _, c := range h.Counts {
			total += c
		}
		want := uint64(p * float64(total))
		var acc uint64
		for i, c := range h.Counts {
			acc += c
			if acc > want {
				return h.Buckets[i+1]
			}
		}
		return h.Buckets[len(h.Buckets)-1]
	}
	fmt.Printf("go %s procs=%d nopoll=%v stops: p50 %.1f us  p99 %.1f us\n", runtime.Version(), *procs, *tight, q(0.5)*1e6, q(0.99)*1e6)
}
