package ring

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// TestConcurrentUse runs a writer, a following reader that acknowledges
// what it read (like the sender), an exporter calling Range in a loop, a
// stats poller and a read-only opener at the same time, with eviction going
// on. Run it with -race.
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 2 << 20, SegmentSize: 64 << 10})
	defer r.Close()
	const n = 300
	size := func(seed int64) int { return sizeFor(seed, 1_000, 30_000) }
	valid := func(f *fragmenter.Fragment) bool {
		g := genFragment(seedOf(f), size(seedOf(f)))
		return sameFragment(f, &g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	writerDone := make(chan struct{})
	var last ID
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		defer close(writerDone)
		for i := int64(0); i < n; i++ {
			f := genFragment(i, size(i))
			id, err := r.Append(&f)
			if err != nil {
				fail(err)
				return
			}
			last = id
		}
	}()
	acks := make(chan ID, 16)
	wg.Add(1)
	go func() { // reader: follows the ring from the start
		defer wg.Done()
		defer close(acks)
		from := ID(0)
		for from != n+1 {
			id, f, err := r.Next(ctx, from)
			if err != nil {
				fail(err)
				return
			}
			if id < from || !valid(&f) || ID(seedOf(&f)+1) != id {
				fail(errors.New("reader got a wrong fragment"))
				return
			}
			acks <- id
			from = id + 1
		}
	}()
	wg.Add(1)
	go func() { // acknowledger
		defer wg.Done()
		for id := range acks {
			if err := r.Ack(id); err != nil {
				fail(err)
				return
			}
		}
	}()
	wg.Add(1)
	go func() { // exporter and observers
		defer wg.Done()
		for {
			prev := ID(0)
			err := r.Range(time.Time{}, time.Time{}, func(id ID, f fragmenter.Fragment) error {
				if id <= prev || !valid(&f) {
					return errors.New("exporter got a wrong fragment")
				}
				prev = id
				return nil
			})
			if err != nil {
				fail(err)
				return
			}
			st := r.Stats()
			if st.BytesUsed > r.opts.Capacity || st.CorruptSkipped != 0 {
				fail(errors.New("stats out of bounds"))
				return
			}
			r.FirstUnacked()
			r.NextID()
			if ro, err := Open(dir, Options{Capacity: 2 << 20, ReadOnly: true, Logger: quietLogger()}); err == nil {
				ro.Range(time.Time{}, time.Time{}, func(id ID, f fragmenter.Fragment) error {
					if !valid(&f) {
						fail(errors.New("read-only opener got a wrong fragment"))
					}
					return nil
				})
				ro.Close()
			} else {
				fail(err)
				return
			}
			select {
			case <-writerDone:
				return
			default:
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if last != n {
		t.Fatalf("last id %d, want %d", last, n)
	}
	checkCapacity(t, r, dir)
}
