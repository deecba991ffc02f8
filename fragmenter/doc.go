// Package fragmenter turns H.264 access units into Kinesis Video Streams
// fragments: Matroska Clusters that each start with an IDR picture, carry
// absolute epoch-millisecond timecodes and come with the stream header
// (EBML header, unknown-size Segment, Info, Tracks) they need.
//
// Everything is written by hand: SimpleBlocks into a buffer the fragmenter
// owns, so the per-frame path allocates nothing in steady state, and the
// header, once per codec configuration, from a few element appenders (a
// test checks it byte for byte against ebml-go's reflective encoder, which
// cost the binary more than the header is worth).
package fragmenter
