//go:build linux

// Command writer feeds an Annex-B H.264 clip into the output side of a
// v4l2loopback device, one access unit per write(2), for the V4L2 VM test.
//
// Protocol on stdin/stdout, so the test controls timing without sleeping:
// the writer sets the format, writes the first access unit (v4l2loopback's
// capture side only works after that) and prints "primed". For every frame
// the test receives it sends a line on stdin, and the writer writes the
// next access unit, at most -fps per second. After the last it prints
// "done" and keeps the device open until stdin is closed.
//
// It is pure Go, with the driver's uapi structs, so that it links
// statically.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kvscamd/kvscamd/drivers/v4l2/uapi"
	"github.com/kvscamd/kvscamd/h264"
)

func main() {
	dev := flag.String("dev", "/dev/video10", "v4l2loopback device")
	clip := flag.String("clip", "", "Annex-B H.264 clip")
	width := flag.Int("width", 320, "picture width")
	height := flag.Int("height", 240, "picture height")
	fps := flag.Int("fps", 30, "write rate after the first access unit")
	flag.Parse()
	if err := run(*dev, *clip, *width, *height, *fps); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
}

func run(dev, clip string, width, height, fps int) error {
	data, err := os.ReadFile(clip)
	if err != nil {
		return err
	}
	var aus [][]byte
	maxAU := 0
	r := h264.NewReader(bytes.NewReader(data))
	for {
		au, err := r.Next()
		if err != nil {
			break
		}
		var b []byte
		for _, n := range au {
			b = append(b, 0, 0, 0, 1)
			b = append(b, n...)
		}
		aus = append(aus, b)
		maxAU = max(maxAU, len(b))
	}
	if len(aus) < 2 {
		return fmt.Errorf("%s: %d access units", clip, len(aus))
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fmtReq := uapi.Format{Type: uapi.V4L2_BUF_TYPE_VIDEO_OUTPUT}
	*fmtReq.Pix() = uapi.PixFormat{
		Width: uint32(width), Height: uint32(height),
		PixelFormat: uapi.V4L2_PIX_FMT_H264, Field: uapi.V4L2_FIELD_NONE,
		SizeImage: uint32(max(maxAU, width*height*3/2)),
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uapi.VIDIOC_S_FMT, uintptr(unsafe.Pointer(&fmtReq))); e != 0 {
		return fmt.Errorf("VIDIOC_S_FMT output H264 %dx%d: %w", width, height, e)
	}
	if _, err := f.Write(aus[0]); err != nil {
		return fmt.Errorf("write access unit 0: %w", err)
	}
	fmt.Println("primed", len(aus))
	// Lockstep: each further unit is written once the reader has
	// acknowledged the previous one (a line on stdin), and no faster than
	// fps. v4l2loopback skips frames for a reader more than two behind,
	// which a loaded CI machine running the VM under TCG could cause.
	stdin := bufio.NewReader(os.Stdin)
	tick := time.NewTicker(time.Second / time.Duration(fps))
	defer tick.Stop()
	for i, au := range aus[1:] {
		if _, err := stdin.ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for the reader to take access unit %d: %w", i, err)
		}
		<-tick.C
		if _, err := f.Write(au); err != nil {
			return fmt.Errorf("write access unit %d: %w", i+1, err)
		}
	}
	fmt.Println("done")
	// Keep the device open until stdin closes, so the reader does not see
	// the producer vanish.
	io.Copy(io.Discard, stdin) //nolint:errcheck
	return nil
}
