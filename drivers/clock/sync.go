package clock

import "os"

// SyncSource says whether the wall clock is known to be right. The system
// clock asks the kernel (adjtimex) and systemd-timesyncd; tests and
// special setups substitute their own.
type SyncSource interface {
	Synced() bool
}

// WithSync returns c with its Synced answer taken from src: time still
// comes from c.
func WithSync(c Clock, src SyncSource) Clock { return syncOverride{c, src} }

type syncOverride struct {
	Clock
	src SyncSource
}

func (s syncOverride) Synced() bool { return s.src.Synced() }

// TestSyncFileEnv names the environment variable of a test hook: when it
// is set, the daemon's clock counts as synchronised exactly while the file
// it names exists, whatever the kernel says and whatever clock_sync is.
// It exists so that end-to-end tests can run the real binary with an
// unsynchronised clock and then synchronise it; it has no use in
// production.
const TestSyncFileEnv = "KVSCAMD_TEST_CLOCK_SYNC_FILE"

// FileSync is a SyncSource that reports synchronised while Path exists
// (the TestSyncFileEnv hook).
type FileSync struct{ Path string }

// Synced implements SyncSource.
func (f FileSync) Synced() bool {
	_, err := os.Stat(f.Path)
	return err == nil
}

// FromEnv applies the TestSyncFileEnv hook to c when the variable is set
// and returns c unchanged otherwise.
func FromEnv(c Clock) Clock {
	if p := os.Getenv(TestSyncFileEnv); p != "" {
		return WithSync(c, FileSync{Path: p})
	}
	return c
}
