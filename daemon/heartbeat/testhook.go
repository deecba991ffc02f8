package heartbeat

// The stall switch is a TEST HOOK. It exists so that the packaged daemon
// can be shown, under a real service manager, to stop feeding the
// watchdog and be restarted when one of its loops hangs. It does nothing
// unless the process was started with StallEnv set.

// StallEnv names the environment variable of the stall test hook: the
// name of a stage (e.g. "cam-1/fragmenter"). With it set, the daemon arms
// the stall when it receives SIGUSR2; without it, nothing changes.
const StallEnv = "KVSCAMD_TEST_STALL"

// ArmStall is the stall test hook: the next Beat of a stage called name
// blocks for good, as a loop hung in a system call would. The returned
// channel is closed once that stage stalled.
func (m *Monitor) ArmStall(name string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stallName = name
	m.stalled = make(chan struct{})
	return m.stalled
}

// ReleaseStall ends every stall ArmStall caused, so that a test can stop
// the daemon cleanly afterwards. Call it at most once.
func (m *Monitor) ReleaseStall() { close(m.release) }

func (m *Monitor) maybeStall(s *Stage) {
	m.mu.Lock()
	if m.stallName == "" || m.stallName != s.name {
		m.mu.Unlock()
		return
	}
	m.stallName = ""
	close(m.stalled)
	m.mu.Unlock()
	// Not a select on a context: a hung loop ignores cancellation too.
	<-m.release
}
