// Package kvslocal is a local Amazon Kinesis Video Streams endpoint for
// tests and demos: the control plane (CreateStream, DescribeStream,
// GetDataEndpoint, ListStreams, DeleteStream, TagStream,
// UpdateDataRetention) and PutMedia, on one plain-HTTP listener on
// 127.0.0.1. It is meant as a strict oracle: what it accepts, the service
// should accept too.
//
// What it checks and how it answers:
//
//   - Every request carries a SigV4 signature (service "kinesisvideo"),
//     re-derived here from the canonical request. Unknown key: 403
//     UnrecognizedClientException; wrong signature or region: 403
//     InvalidSignatureException; expired session token: 403
//     ExpiredTokenException "The security token included in the request is
//     expired"; X-Amz-Date more than MaxClockSkew (default 5 min, the window
//     the service states in its "Signature expired: ... (... - 5 min.)"
//     answers) off the server clock: 403 InvalidSignatureException
//     "Signature expired: ..." / "Signature not yet current: ...".
//     PutMedia must be signed with the SHA-256 of the empty string as the
//     payload hash (the body is streamed unsigned), or with
//     x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD as the Java
//     SDK does; UNSIGNED-PAYLOAD is refused unless
//     Options.AcceptUnsignedPayload, since the service is not known to take
//     it.
//   - Errors are REST-JSON: x-amzn-ErrorType "<Exception>:<namespace>" and a
//     {"message": ...} body, which the AWS SDK for Go v2 turns into its typed
//     errors (types.ResourceNotFoundException and so on).
//   - PutMedia answers 200 at once and streams ACKs (BUFFERING when a
//     fragment's Cluster Timecode arrives, RECEIVED when the fragment is
//     complete: the next Cluster starts, an AWS_KINESISVIDEO_END_OF_FRAGMENT
//     tag arrives or the body ends; PERSISTED PersistDelay (default
//     300 ms) after RECEIVED only when the stream has retention; IDLE every IdleAckInterval without bytes; ERROR
//     with ErrorId/ErrorCode, after which the connection ends). ACK framing
//     is configurable and by default mixes newline-separated, concatenated
//     and split objects, so clients must decode a JSON stream.
//   - The body is parsed as it streams, holding at most one fragment: EBML
//     header with DocType matroska or webm, one Segment, Info, Tracks with
//     at most MaxTracks tracks and an H.264 track (V_MPEG4/ISO/AVC) with an
//     AVCDecoderConfigurationRecord or an H.265 track (V_MPEGH/ISO/HEVC)
//     with an HEVCDecoderConfigurationRecord, Clusters of known or unknown size that
//     start with a key frame, strictly increasing fragment times, block
//     tracks that exist, metadata tags within limits. Violations get the
//     service's ErrorIds (4001 size, 4002 duration over 20 s or, with
//     ErrorCode MIN_FRAGMENT_DURATION_REACHED, under 1 s less a jitter
//     allowance, 4004 timecodes, 4006
//     invalid MKV, 4007 timestamp in the future, 4009 metadata, 4010 track
//     number, 4011 frames missing for a track, 4012 too many tracks; 4003
//     when the connection outlives MaxConnectionDuration; 4008 when the
//     stream is deleted under an open connection).
//   - Quotas per stream: one PutMedia connection (a second, while one is
//     open, gets 400 ConnectionLimitExceededException, as the current
//     quotas page says; Options.ReplaceOpenConnection gives the older
//     documented behaviour, where it ends the open one), PutMedia and control-plane calls per second (400
//     ClientLimitExceededException), fragments per second (a fragment over
//     the quota gets ERROR 4000) and bandwidth (enforced by reading the
//     body more slowly).
//
// Tests arm faults per stream at any time: FailFragment (any ErrorId),
// DropConnection (mid-fragment), StallAcks, Throttle, SlowReader, Down
// (503 or connection refused) and ExpireCredentials.
//
// Options.SeparateDataEndpoint puts PutMedia on a second port (DataURL) and
// refuses it on the control endpoint with InvalidEndpointException, so a
// client must use GetDataEndpoint; Options.TLS serves HTTPS with a
// self-signed certificate (CACertPEM, ClientTLSConfig) for producers that
// insist on https. Only HTTP/1.1 is served. CheckStream applies the same
// MKV rules offline, without a server.
//
// Deliberate choices where the service's behaviour is not documented:
// x-amzn-producer-start-timestamp is required; a fragment must start with a
// key frame (4006 otherwise); a fragment stamped more than
// MaxFutureTimestamp ahead of the server clock gets 4007; fragments over
// the per-second quota get ERROR 4000 (the service's answer is not
// documented); a fragment under the minimum duration gets ErrorId 4002;
// when a connection goes idle the open fragment is completed as at the end
// of the body. Answers carry a Date header from the server's clock
// (Options.Now), from which producers learn their clock offset.
//
// What a stream received is kept in memory (Fragments, Acks, Wait) and, when
// Options.Dir is set, on disk: <Dir>/<stream>/conn-NNNN.mkv holds the header
// and the RECEIVED clusters of each connection (playable with ffmpeg), and
// <Dir>/<stream>/fragments.jsonl one Fragment per line, written once it is
// known whether the fragment was persisted. LiveView models what a LIVE
// viewer sees (fragments by ingestion time, with their producer time), so
// tests can measure live lag.
//
// Typical use in a test:
//
//	srv := kvslocal.Start(t, kvslocal.Options{IdleTimeout: 2 * time.Second})
//	srv.CreateStream("cam-1", 24*time.Hour)
//	creds := srv.IssueCredentials(15 * time.Minute)
//	// point the code under test at srv.URL with creds, then:
//	frags, err := srv.WaitFragments(ctx, "cam-1", 3)
package kvslocal
