package ring

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const lockEnvChild = "KVSCAMD_RING_LOCK_CHILD"

// TestLockSurvivesDeletedLockFile holds a ring open in another process,
// deletes its lock file, and checks that a second writer is refused with
// the holder named, and that no record was touched.
func TestLockSurvivesDeletedLockFile(t *testing.T) {
	if dir := os.Getenv(lockEnvChild); dir != "" {
		lockChild(dir)
		return
	}
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 4 << 20, SegmentSize: 64 << 10})
	for i := int64(0); i < 20; i++ {
		f := genFragment(i, 20<<10)
		mustAppend(t, r, &f)
	}
	r.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestLockSurvivesDeletedLockFile$")
	cmd.Env = append(os.Environ(), lockEnvChild+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OPEN") {
		t.Fatalf("child did not open the ring: %q %v", line, err)
	}

	if err := os.Remove(filepath.Join(dir, lockName)); err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 2; try++ { // the refused Open must not break the lock either
		_, err = Open(dir, Options{Capacity: 4 << 20, SegmentSize: 64 << 10, Logger: quietLogger()})
		want := fmt.Sprintf("pid %d", cmd.Process.Pid)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "another state_dir") {
			t.Fatalf("second writer after the lock file was deleted (try %d): %v; want a refusal naming %s", try, err, want)
		}
	}
	ro := mustOpen(t, dir, Options{Capacity: 4 << 20, ReadOnly: true})
	defer ro.Close()
	if ids, _ := collect(t, ro); len(ids) != 20 || ro.Stats().CorruptSkipped != 0 {
		t.Fatalf("after the refused writer: %d records readable (want 20), stats %+v", len(ids), ro.Stats())
	}
}

// lockChild opens the ring, says so, and holds it until stdin closes.
func lockChild(dir string) {
	r, err := Open(dir, Options{Capacity: 4 << 20, SegmentSize: 64 << 10, Logger: quietLogger()})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("OPEN")
	bufio.NewReader(os.Stdin).ReadString('\n')
	r.Close()
	os.Exit(0)
}
