// Package ring is kvscamd's crash-safe, bounded, on-disk buffer of video
// fragments: one ring per stream, in its own directory. It is the source of
// truth for what has not reached the cloud yet.
//
// # Layout
//
// A ring directory holds preallocated segment files (%016x.seg, numbered by
// a sequence that never repeats), one small index file per sealed segment
// (%016x.idx), an acknowledgement log (acks.log), the ring's identity
// (ring.id, see identity.go) and a lock file. One process writes a ring: it
// holds an flock on the ring directory itself and on the lock file (see
// lock.go), so deleting the lock file does not let a second writer in. Appends
// are sequential writes into the newest ("active") segment followed by one
// fdatasync; nothing is renamed or rewritten per fragment.
//
// Every record carries a header with its id, its segment's sequence number,
// the fragment's time span, the payload length, a CRC-32C of the payload
// and a CRC-32C of the header itself. The payload is the fragment's
// AppendBinary encoding.
//
// # Recovery
//
// The data is the truth and the index files are a cache. Open trusts a
// segment's index only if its checksum, sequence number and bounds are
// consistent with the segment file; otherwise it walks the segment's record
// headers and rewrites the index. The active segment is indexed at Close;
// after a crash, Open walks it by header from where its index ends (from
// its start if it has none: a few hundred small reads for 64 MiB) and
// verifies the payload of the last record found, because only a record
// written after the last completed fdatasync can be torn; a torn tail is
// cut and zeroed.
// A damaged header in the middle is skipped by scanning forward for the next
// valid header; a damaged payload is found when the record is read, because
// every read verifies both checksums. Either way the record is dropped,
// counted (Stats.CorruptSkipped), reported once at Warn level with the time
// range lost, and never handed out; its bytes are then zeroed so that no
// later start reports it again (see damage.go).
//
// # Acknowledgements
//
// Ack appends a small checksummed entry to acks.log and fdatasyncs it, so
// after a crash only fragments that were in flight are uploaded again. When
// the log fills up it is replaced (write temp, fsync, rename) by a compact
// checkpoint: a watermark below which everything is acknowledged plus the
// ranges of acknowledged ids above it.
//
// # Space and eviction policy
//
// The ring never holds more than its effective capacity: Options.Capacity,
// or less when the filesystem cannot hold that much (see space.go). It
// counts every file it owns rounded up to 4 KiB blocks (the preallocated
// size of the active segment, index files, the ack log and room for its
// checkpoint).
// When an append needs room, the ring frees space in this order:
//
//  1. Sealed segments whose fragments are all acknowledged are deleted,
//     oldest first. Acknowledged fragments inside sealed segments that still
//     hold unacknowledged ones are freed in place by punching holes
//     (fallocate PUNCH_HOLE) over them, oldest first; so unacknowledged
//     video is never dropped while acknowledged video could go instead, and
//     nothing is copied.
//  2. Only when every remaining fragment outside the active segment is
//     unacknowledged is the oldest sealed segment deleted. That is data
//     loss: it is counted in Stats.Lost and logged at Error level with the
//     stream, the ids and the time range.
//
// When the filesystem does not support hole punching, step 1 only deletes
// whole segments. MaxAge expires whole sealed segments whose newest fragment
// is older than MaxAge; unacknowledged fragments expired that way are counted
// in Stats.Expired.
//
// The filesystem filling up (other files, or a ring_size larger than the
// disk) is handled like a full ring: acknowledged video is freed first,
// then smaller segments are tried, and only then is the oldest
// unacknowledged video evicted for newer video, counted in Stats.Lost.
//
// Segments are 1/16 of the effective capacity, between 64 KiB and 64 MiB.
// A fragment that does not fit into a segment of that size gets a segment
// of its own, sized to fit; a fragment larger than the ring's capacity is
// refused with ErrTooLarge.
//
// # Concurrency
//
// One goroutine appends; any number of readers call Next, NextStream and
// Range; Ack and Stats may be called from anywhere, all at the same time.
// Readers only see records whose fdatasync has completed. Next blocks until
// a record at or after the requested id exists, its context ends, or the
// ring is closed. Slow readers do not hold up the writer: eviction may
// remove records they have not reached yet, and they skip over them; a
// record evicted while its Body is being read ends that read with
// ErrEvicted.
//
// Another process (kvscamd export) may open the same directory with
// Options.ReadOnly while the daemon writes it; it takes no lock and repairs
// nothing.
package ring
