package ring

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The torture test runs a writer in a child process (this test binary,
// re-executed) and SIGKILLs it at random moments: between or inside
// appends, acks, segment changes, evictions, ack-log checkpoints, and
// during Open's own recovery. After every kill the parent reopens the ring
// and checks the promises: every fragment whose Append returned is there,
// byte for byte; nothing else but whole, original fragments is there;
// acknowledgements that returned are kept; ids are never reused.

const (
	tortureEnvChild = "RING_TORTURE_CHILD"
	tortureEnvDir   = "RING_TORTURE_DIR"
	tortureEnvCycle = "RING_TORTURE_CYCLE"
	// tortureEnvCycles sets the number of kill cycles (make torture).
	tortureEnvCycles     = "RING_TORTURE_CYCLES"
	tortureDefaultCycles = 100
	tortureShortCycles   = 25
	// tortureMaxAppends bounds one child's appends, so that the video it
	// leaves unacknowledged always fits: then nothing may be missing.
	tortureMaxAppends = 60
)

var tortureOpts = Options{Capacity: 6 << 20, SegmentSize: 256 << 10}

func tortureSize(seed int64) int { return sizeFor(seed, 500, 60_000) }

func TestTorture(t *testing.T) {
	if os.Getenv(tortureEnvChild) != "" {
		tortureChild()
		return
	}
	cycles := tortureDefaultCycles
	if testing.Short() {
		cycles = tortureShortCycles
	}
	if s := os.Getenv(tortureEnvCycles); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", tortureEnvCycles, s)
		}
		cycles = n
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	seedID := map[int64]ID{} // every seed whose Append returned, and its id
	var maxID ID
	var appended, killedInOpen int
	for c := 1; c <= cycles; c++ {
		rep := runTortureChild(t, dir, c, rng)
		if !rep.opened {
			killedInOpen++
		}
		appended += len(rep.appends)
		for _, a := range rep.appends {
			if a.id <= maxID {
				t.Fatalf("cycle %d: id %d reused (ids up to %d were already handed out)", c, a.id, maxID)
			}
			maxID = a.id
			seedID[a.seed] = a.id
		}
		verifyTorture(t, dir, c, rep, seedID)
	}
	t.Logf("%d kill cycles (%d during start-up), %d appends confirmed", cycles, killedInOpen, appended)
}

type tortureAppend struct {
	id   ID
	seed int64
}

type tortureReport struct {
	opened  bool
	appends []tortureAppend
	acks    map[ID]bool
}

func runTortureChild(t *testing.T, dir string, cycle int, rng *rand.Rand) tortureReport {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTorture$")
	cmd.Env = append(os.Environ(), tortureEnvChild+"=1", tortureEnvDir+"="+dir, tortureEnvCycle+"="+strconv.Itoa(cycle))
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	kill := func() { cmd.Process.Kill() }
	killAt := -1 // kill after this many confirmed appends
	if rng.IntN(7) == 0 {
		// A random instant, mostly landing in start-up and recovery.
		tm := time.AfterFunc(time.Duration(rng.IntN(40_000))*time.Microsecond, kill)
		defer tm.Stop()
	} else {
		killAt = rng.IntN(tortureMaxAppends)
	}
	rep := tortureReport{acks: map[ID]bool{}}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch f[0] {
		case "O":
			rep.opened = true
			if killAt == 0 {
				kill()
			}
		case "A":
			id, _ := strconv.ParseUint(f[1], 10, 64)
			seed, _ := strconv.ParseInt(f[2], 10, 64)
			rep.appends = append(rep.appends, tortureAppend{ID(id), seed})
			if len(rep.appends) == killAt {
				kill()
			}
		case "K":
			id, _ := strconv.ParseUint(f[1], 10, 64)
			rep.acks[ID(id)] = true
		case "D":
			kill()
		case "E":
			kill()
			t.Fatalf("cycle %d: child failed: %s", cycle, sc.Text())
		}
	}
	pr.Close()
	cmd.Wait()
	return rep
}

// tortureChild appends and acknowledges as fast as it can, reporting each
// call that returned on fd 3, until it is killed.
func tortureChild() {
	out := os.NewFile(3, "report")
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	cycle, _ := strconv.Atoi(os.Getenv(tortureEnvCycle))
	o := tortureOpts
	o.Logger = quietLogger()
	r, err := Open(os.Getenv(tortureEnvDir), o)
	if err != nil {
		say("E open: %v", err)
		os.Exit(2)
	}
	say("O")
	rng := rand.New(rand.NewPCG(uint64(cycle), 2))
	var pending []ID
	for k := 1; k <= tortureMaxAppends; k++ {
		seed := int64(cycle)*10_000 + int64(k)
		f := genFragment(seed, tortureSize(seed))
		id, err := r.Append(&f)
		if err != nil {
			say("E append: %v", err)
			os.Exit(3)
		}
		say("A %d %d", id, seed)
		ack := func(id ID) {
			if err := r.Ack(id); err != nil {
				say("E ack: %v", err)
				os.Exit(4)
			}
			say("K %d", id)
		}
		switch n := rng.IntN(10); {
		case n < 6:
			ack(id)
		case n < 8 && len(pending) > 0: // out of order
			i := rng.IntN(len(pending))
			ack(pending[i])
			pending = append(pending[:i], pending[i+1:]...)
			pending = append(pending, id)
		default:
			pending = append(pending, id)
		}
	}
	say("D")
	select {}
}

func verifyTorture(t *testing.T, dir string, cycle int, rep tortureReport, seedID map[int64]ID) {
	t.Helper()
	r := mustOpen(t, dir, tortureOpts)
	defer r.Close()
	ids, fs := collect(t, r)
	present := map[ID]bool{}
	for i, id := range ids {
		seed := seedOf(&fs[i])
		g := genFragment(seed, tortureSize(seed))
		if !sameFragment(&fs[i], &g) {
			t.Fatalf("cycle %d: id %d holds a fragment that was never appended", cycle, id)
		}
		if want, ok := seedID[seed]; ok && want != id {
			t.Fatalf("cycle %d: fragment of seed %d under id %d, its Append returned %d", cycle, seed, id, want)
		}
		present[id] = true
	}
	for _, a := range rep.appends {
		if !present[a.id] && !rep.acks[a.id] {
			t.Fatalf("cycle %d: id %d (seed %d) was appended and not acknowledged, but is gone", cycle, a.id, a.seed)
		}
	}
	r.mu.Lock()
	for _, e := range r.entries {
		if rep.acks[e.id] && !e.acked {
			r.mu.Unlock()
			t.Fatalf("cycle %d: acknowledgement of id %d lost", cycle, e.id)
		}
	}
	r.mu.Unlock()
	if st := r.Stats(); st.CorruptSkipped != 0 || st.Lost != 0 {
		t.Fatalf("cycle %d: %d corrupt records, %d lost after a crash", cycle, st.CorruptSkipped, st.Lost)
	}
	// Everything is "uploaded" now, so the next child starts afresh.
	for _, id := range ids {
		if err := r.Ack(id); err != nil {
			t.Fatal(err)
		}
	}
}
