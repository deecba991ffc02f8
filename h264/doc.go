// Package h264 reads H.264 Annex-B byte streams as cameras and encoders
// write them: it splits NAL units, groups them into access units (one
// picture each), recognises IDR pictures, reads the few SPS fields the
// pipeline needs and builds the AVCDecoderConfigurationRecord that Matroska
// carries as CodecPrivate.
//
// Bitstream details that need a full parser (the SPS fields) come from
// mediacommon; this package adds the streaming and grouping a capture
// pipeline needs, with bounded memory.
package h264
