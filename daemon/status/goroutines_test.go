package status

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
)

// The served status counts the daemon's goroutines, for leak checks
// from outside the process.
func TestStatusGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	serve(t, path)
	st, err := NewClient(path).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// This test's goroutine, the server's accept loop and the connection's
	// handler are running at least.
	if st.Goroutines < 3 || st.Goroutines > runtime.NumGoroutine()+10 {
		t.Fatalf("goroutines = %d, want between 3 and about %d", st.Goroutines, runtime.NumGoroutine())
	}
}
