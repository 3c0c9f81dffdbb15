// The Go peer of `spindle bench --scaling`: the same workloads as the Rust runtimes,
// with goroutines, channels and runtime.Gosched. `spindle bench` builds it with
// `go build` when a Go toolchain is installed, runs it with GOMAXPROCS set to the
// run's core count in a process restricted to those CPUs, and reads one line:
//
//	<ns of the timed run>
//
// Usage: go-scaling <workload> <n> <m>. Each call runs the workload once to warm up,
// then once timed.
//
// The blocking suite (`spindle bench --blocking`) adds blocking_mix: of n
// goroutines, n/10 call nanosleep(2) for 1 ms in a loop while the rest compute in
// chunks for m milliseconds (a real blocking system call, as std::thread::sleep is in the Rust peers;
// Go's own time.Sleep would not block its thread); blocking_mix_base is the same
// without the sleepers. Both print the number of chunks computed instead of a time.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func fibSeq(n uint64) uint64 {
	if n < 2 {
		return n
	}
	return fibSeq(n-1) + fibSeq(n-2)
}

func skynet(num, size, fanout uint64) uint64 {
	if size == 1 {
		return num
	}
	child := size / fanout
	c := make(chan uint64, fanout)
	for i := uint64(0); i < fanout; i++ {
		go func(i uint64) { c <- skynet(num+i*child, child, fanout) }(i)
	}
	var sum uint64
	for i := uint64(0); i < fanout; i++ {
		sum += <-c
	}
	return sum
}

func fib(n, depth, spawnAbove uint64) uint64 {
	if n < 2 || depth >= spawnAbove {
		return fibSeq(n)
	}
	c := make(chan uint64, 1)
	go func() { c <- fib(n-1, depth+1, spawnAbove) }()
	b := fib(n-2, depth+1, spawnAbove)
	return <-c + b
}

func fanin(producers, each uint64) {
	c := make(chan uint64)
	for p := uint64(0); p < producers; p++ {
		go func(p uint64) {
			for i := uint64(0); i < each; i++ {
				c <- p*each + i
			}
		}(p)
	}
	for i := uint64(0); i < producers*each; i++ {
		<-c
	}
}

func pairs(pairs, rounds uint64) {
	var wg sync.WaitGroup
	for p := uint64(0); p < pairs; p++ {
		a, b := make(chan uint64), make(chan uint64)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := uint64(0); i < rounds; i++ {
				a <- i
				if <-b != i {
					panic("pairs: wrong round")
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := uint64(0); i < rounds; i++ {
				b <- <-a
			}
		}()
	}
	wg.Wait()
}

// ring passes a token of `hops` hops around `threads` goroutines, each with a
// channel of capacity one as its mailbox.
func ring(threads, hops uint64) {
	boxes := make([]chan uint64, threads)
	for i := range boxes {
		boxes[i] = make(chan uint64, 1)
	}
	var wg sync.WaitGroup
	for i := uint64(0); i < threads; i++ {
		wg.Add(1)
		go func(i uint64) {
			defer wg.Done()
			next := boxes[(i+1)%threads]
			for t := range boxes[i] {
				if t <= 1 {
					select {
					case next <- 1:
					default:
					}
					return
				}
				next <- t - 1
			}
		}(i)
	}
	boxes[0] <- hops + 1
	wg.Wait()
}

func chainedSpawn(n uint64) {
	done := make(chan struct{})
	var link func(left uint64)
	link = func(left uint64) {
		if left == 0 {
			close(done)
			return
		}
		go link(left - 1)
	}
	go link(n)
	<-done
}

func yieldMany(threads, yields uint64) {
	var wg sync.WaitGroup
	for t := uint64(0); t < threads; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); i < yields; i++ {
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
}

func spawnJoin(n uint64) {
	var count atomic.Uint64
	for i := uint64(0); i < n; i++ {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { count.Add(1); wg.Done() }()
		wg.Wait()
	}
	if count.Load() != n {
		panic("spawn_join: a goroutine did not run")
	}
}

// chunk is one unit of the blocking suite's compute: 1,000 steps of a 64-bit LCG,
// as in the Rust peers.
func chunk(x uint64) uint64 {
	for i := 0; i < 1000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

var sink atomic.Uint64

// blockingMix computes on n - n/10 goroutines (with n/10 sleepers if sleepers is
// set) for ms milliseconds and returns the chunks computed.
func blockingMix(n, ms uint64, sleepers bool) uint64 {
	var stop atomic.Bool
	var chunks atomic.Uint64
	var wg sync.WaitGroup
	if sleepers {
		for s := uint64(0); s < n/10; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ts := syscall.Timespec{Nsec: 1_000_000}
				for !stop.Load() {
					syscall.Nanosleep(&ts, nil)
				}
			}()
		}
	}
	for c := uint64(0); c < n-n/10; c++ {
		wg.Add(1)
		go func(c uint64) {
			defer wg.Done()
			x := c
			var done uint64
			for !stop.Load() {
				x = chunk(x)
				done++
				runtime.Gosched()
			}
			sink.Add(x)
			chunks.Add(done)
		}(c)
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	return chunks.Load()
}

func one(work string, n, m uint64) {
	switch work {
	case "skynet":
		if skynet(0, n, m) != n*(n-1)/2 {
			panic("skynet: wrong sum")
		}
	case "fib":
		if fib(n, 0, m) != fibSeq(n) {
			panic("fib: wrong result")
		}
	case "fanin":
		fanin(m, n)
	case "pairs":
		pairs(m, n)
	case "ring":
		ring(m, n)
	case "chained_spawn":
		chainedSpawn(n)
	case "yield_many":
		yieldMany(m, n)
	case "spawn_join_default":
		spawnJoin(n)
	default:
		fmt.Fprintln(os.Stderr, "unknown workload", work)
		os.Exit(2)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go-scaling <workload> <n> <m>")
		os.Exit(2)
	}
	n, err1 := strconv.ParseUint(os.Args[2], 10, 64)
	m, err2 := strconv.ParseUint(os.Args[3], 10, 64)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "n and m are numbers")
		os.Exit(2)
	}
	if os.Args[1] == "blocking_mix" || os.Args[1] == "blocking_mix_base" {
		fmt.Println(blockingMix(n, m, os.Args[1] == "blocking_mix"))
		return
	}
	one(os.Args[1], n, m)
	t0 := time.Now()
	one(os.Args[1], n, m)
	fmt.Println(time.Since(t0).Nanoseconds())
}
