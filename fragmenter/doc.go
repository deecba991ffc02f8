// Package fragmenter turns H.264 access units into Kinesis Video Streams
// fragments: Matroska Clusters that each start with an IDR picture, carry
// absolute epoch-millisecond timecodes and come with the stream header
// (EBML header, unknown-size Segment, Info, Tracks) they need.
//
// The per-frame path writes SimpleBlocks by hand into a buffer the
// fragmenter owns, so it allocates nothing in steady state; the header,
// written once per codec configuration, is marshalled with ebml-go.
package fragmenter
