package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux fixes it at 100 on every architecture kvscamd runs on.
const clockTicks = 100

// procSample is one reading of a process's counters from /proc.
type procSample struct {
	CPUSeconds float64 // utime + stime
	RSS, HWM   int64   // VmRSS, VmHWM in bytes
	// RSSAnon and RSSFile split VmRSS: anonymous memory (heap, stacks) and
	// file-backed pages (the binary and libraries), which the kernel can
	// drop and share; how much of the binary stays resident depends on
	// the kernel (fault-around, large folios).
	RSSAnon, RSSFile int64
	Threads          int
	FDs              int
	Voluntary        int64 // context switches summed over all threads
	Involuntary      int64
	WriteBytes       int64 // /proc/<pid>/io write_bytes: bytes sent to the block layer
	WrittenChars     int64 // /proc/<pid>/io wchar: bytes passed to write calls (sockets too)
}

// readProc samples pid. Context switches are summed over the threads in
// /proc/<pid>/task because /proc/<pid>/status counts the main thread only.
func readProc(pid int) (procSample, error) {
	var s procSample
	base := fmt.Sprintf("/proc/%d", pid)
	stat, err := os.ReadFile(base + "/stat")
	if err != nil {
		return s, fmt.Errorf("read %s/stat: %w", base, err)
	}
	// The command name may contain spaces and parentheses: fields are
	// counted from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("parse %s/stat: no ')'", base)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("parse %s/stat: %d fields", base, len(f))
	}
	// After ')' come state (field 3) ... utime is field 14, stime 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUSeconds = float64(ut+st) / clockTicks

	status, err := os.ReadFile(base + "/status")
	if err != nil {
		return s, fmt.Errorf("read %s/status: %w", base, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			s.RSS = kB(v)
		case "VmHWM":
			s.HWM = kB(v)
		case "RssAnon":
			s.RSSAnon = kB(v)
		case "RssFile":
			s.RSSFile = kB(v)
		case "Threads":
			s.Threads, _ = strconv.Atoi(v)
		}
	}
	tasks, _ := filepath.Glob(base + "/task/*/status")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited between glob and read
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				s.Voluntary += n
			case "nonvoluntary_ctxt_switches":
				s.Involuntary += n
			}
		}
	}
	fds, err := os.ReadDir(base + "/fd")
	if err != nil {
		return s, fmt.Errorf("read %s/fd: %w", base, err)
	}
	s.FDs = len(fds)
	io, err := os.ReadFile(base + "/io")
	if err != nil {
		return s, fmt.Errorf("read %s/io (needs root or the same user): %w", base, err)
	}
	for _, line := range strings.Split(string(io), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "write_bytes":
			s.WriteBytes = n
		case "wchar":
			s.WrittenChars = n
		}
	}
	return s, nil
}

// kB parses "1234 kB" into bytes.
func kB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n << 10
}

// sectorsWritten returns the sectors (512 bytes) written to the block
// device called name (e.g. "loop3"), from /proc/diskstats.
func sectorsWritten(name string) (int64, error) {
	b, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 9 && f[2] == name {
			return strconv.ParseInt(f[9], 10, 64)
		}
	}
	return 0, fmt.Errorf("diskstats: no device %s", name)
}
