package fragmenter

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// BootID identifies one run of the machine from power-on to shutdown; the
// kernel makes up a new one at every boot. Monotonic clock readings are
// only comparable within one boot.
type BootID [16]byte

// BootIDFile is where Linux publishes the current boot id.
const BootIDFile = "/proc/sys/kernel/random/boot_id"

// String formats the id as the kernel does (8-4-4-4-12 hex digits).
func (b BootID) String() string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// IsZero reports whether the id is unset.
func (b BootID) IsZero() bool { return b == BootID{} }

// ParseBootID parses the kernel's text form of a boot id.
func ParseBootID(s string) (BootID, error) {
	var b BootID
	raw, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
	if err != nil || len(raw) != len(b) {
		return b, fmt.Errorf("fragmenter: boot id %q: want 32 hex digits", strings.TrimSpace(s))
	}
	copy(b[:], raw)
	return b, nil
}

// CurrentBootID reads the running kernel's boot id.
func CurrentBootID() (BootID, error) {
	raw, err := os.ReadFile(BootIDFile)
	if err != nil {
		return BootID{}, fmt.Errorf("fragmenter: read boot id: %w", err)
	}
	return ParseBootID(string(raw))
}

// clusterTimecodeAt is where appendClusterStart puts the 8-byte Cluster
// Timecode value.
var clusterTimecodeAt = len(idCluster) + len(unknownSize) + 2

// Rebase moves a fragment to another absolute timecode: it sets Timecode
// and rewrites the Cluster's Timecode element in place (block timecodes
// are relative to it, so the frames move along). It is how a fragment
// captured before the wall clock was known is placed on it, and it clears
// WallUnknown. The Cluster must be one this package wrote.
func (f *Fragment) Rebase(timecode int64) error {
	at := clusterTimecodeAt
	if len(f.Cluster) < at+8 || f.Cluster[at-2] != idTimecode || f.Cluster[at-1] != 0x88 {
		return fmt.Errorf("fragment %d: cluster does not start with an 8-byte timecode", f.Timecode)
	}
	binary.BigEndian.PutUint64(f.Cluster[at:], uint64(timecode))
	f.Timecode = timecode
	f.WallUnknown = false
	return nil
}
