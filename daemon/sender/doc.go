// Package sender uploads fragments from the ring buffer to Kinesis Video
// Streams with PutMedia and acknowledges them in the ring once the service
// says they are stored.
//
// One Sender serves one stream and keeps at most one PutMedia connection
// open, because the service allows one per stream and throttles the newest
// when there are more. Within a connection fragments go out in ring order
// with strictly increasing timecodes; a fragment whose timecode is not
// after the previous one starts a new connection.
//
// Scheduling (schedule.go). With UploadOrder in-order a connection starts
// at the oldest fragment not yet acknowledged and follows the ring. With
// live-first (the default) the sender keeps a live cursor, a ring id:
// fragments from it on are live, unacknowledged ones below it are the
// backlog. Before each connection, and after each fragment of a live
// connection, the cursor moves up to the live edge, the first fragment
// ending within MaxLiveLag of the newest one, so live video that fell
// further behind is left to the backlog. Then:
//
//   - live video waiting: a live connection follows the ring from the
//     cursor; once it has sent everything there and a backlog waits, it
//     ends (the spare capacity goes to the backlog);
//   - else a backlog connection sends the backlog oldest first and ends at
//     the first fragment boundary after the oldest waiting live fragment
//     has waited MaxLiveLag/2, or when the backlog is through; the live
//     video that waited for the slice then goes out even if the switch
//     put it past the live edge;
//   - else a retry connection sends set-aside fragments whose time came;
//   - else the sender waits for live video.
//
// In live-first order a connection writes a fragment only while at most
// one fragment before the last it wrote waits for its RECEIVED: about two
// fragments are in flight at most, so a buffered uplink cannot hold seconds of video ahead of the
// scheduler's decisions (or of live video written behind it).
//
// Failures are per fragment (see AckErrorClass): a fragment that keeps
// failing is set aside (kept in the ring, reported, persisted in
// Config.SetAsideFile, retried later) and the stream goes on. Every failure
// ends the connection; the next one starts as the scheduler says, after a
// back-off that depends on the kind of failure. A connection is also
// ended when it takes data without acknowledging it (StaleFragments,
// StaleMedia, StaleWait), when a write stalls, or when a fragment is not
// RECEIVED or PERSISTED in time.
//
// Goroutines: Run owns everything. Each connection has three goroutines for
// its lifetime: the writer (Run's own goroutine, feeding the request body
// through an io.Pipe), the HTTP round trip that then reads the
// acknowledgement stream, and a watchdog for time-outs. Run waits for all
// of them before it opens the next connection, so acknowledgements of an old
// connection can never race with a new one.
//
// A slow link is absorbed by the ring: the writer blocks in the pipe while
// the transport drains it, Run keeps nothing but the fragment being sent in
// memory, and capture keeps appending to the ring.
//
// Idle connections: the service closes a PutMedia request 30 s after the
// last data. Rather than let that happen (and have the last fragment's
// acknowledgement race with the close), the sender ends the request body
// itself when no fragment was ready for Config.IdleClose (20 s by default):
// the service then acknowledges the final fragment and ends the response
// cleanly. The next fragment opens a new connection.
package sender
