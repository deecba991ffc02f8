package v4l2

// Info is what Probe learns about a device node without streaming from it.
type Info struct {
	Driver, Card string
	// Capture is true for a single-planar streaming capture device, the
	// only kind this driver can read.
	Capture bool
	// Formats are the pixel formats offered, as four-character codes.
	Formats []string
	// H264 is true when one of them is H.264 with start codes.
	H264 bool
}
