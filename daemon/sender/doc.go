// Package sender uploads fragments from the ring buffer to Kinesis Video
// Streams with PutMedia and acknowledges them in the ring once the service
// says they are stored.
//
// One Sender serves one stream and keeps at most one PutMedia connection
// open, because the service allows one per stream and throttles the newest
// when there are more. A connection starts at the oldest fragment not yet
// acknowledged, streams fragments in ring (= timecode) order as fast as the
// link and the per-stream quotas allow, and then follows live data. Every
// failure ends the connection; the next one resumes from the first fragment
// not yet acknowledged, after a back-off that depends on the kind of failure.
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
