package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kvscamd/kvscamd/h264"
)

// The benchmark clip: what a Raspberry Pi camera sends at 1080p30 and
// 4 Mbit/s (High profile, no B-frames, SPS/PPS before every IDR, a key
// frame every 2 s). Noise over the test pattern keeps the encoder at its
// bitrate; a plain pattern would compress to a fraction of it.
const (
	clipSeconds = 20
	clipFPS     = 30
	clipName    = "bench-1080p30-4M.h264"
)

// clipInfo describes the clip as the daemon sees it: access unit sizes in
// the order they are replayed, as H.264 bytes in length-prefixed form
// (NAL unit plus a 4-byte length, which is what a Matroska block holds).
type clipInfo struct {
	Path   string
	Sizes  []int64
	prefix []int64 // prefix[k] = bytes of the first k access units
}

// ensureClip returns the clip from cacheDir, encoding it with ffmpeg the
// first time.
func ensureClip(ctx context.Context, cacheDir string) (*clipInfo, error) {
	path := filepath.Join(cacheDir, clipName)
	if _, err := os.Stat(path); err != nil {
		if err := encodeClip(ctx, path); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ci := &clipInfo{Path: path, prefix: []int64{0}}
	rd := h264.NewReader(f)
	for {
		au, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bench clip %s: %w (delete it to encode it again)", path, err)
		}
		var n int64
		for _, nalu := range au {
			n += int64(len(nalu)) + 4
		}
		ci.Sizes = append(ci.Sizes, n)
		ci.prefix = append(ci.prefix, ci.prefix[len(ci.prefix)-1]+n)
	}
	if len(ci.Sizes) == 0 {
		return nil, fmt.Errorf("bench clip %s holds no access units (delete it to encode it again)", path)
	}
	return ci, nil
}

// videoBytes returns the bytes of the first frames access units of a
// looping replay.
func (c *clipInfo) videoBytes(frames uint64) int64 {
	n := uint64(len(c.Sizes))
	return int64(frames/n)*c.prefix[n] + c.prefix[frames%n]
}

// bitrate is the clip's mean bitrate in bits per second.
func (c *clipInfo) bitrate() float64 {
	return float64(c.prefix[len(c.Sizes)]) * 8 / (float64(len(c.Sizes)) / clipFPS)
}

func encodeClip(ctx context.Context, path string) error {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return errors.New("the bench clip needs ffmpeg with libx264 (Debian: apt-get install ffmpeg)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid()) // concurrent runs do not share it
	cmd := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=1920x1080:rate=%d", clipFPS), "-t", fmt.Sprint(clipSeconds),
		"-vf", "noise=alls=12:allf=t",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-profile:v", "high", "-g", fmt.Sprint(2*clipFPS), "-bf", "0",
		"-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M", "-x264-params", "repeat-headers=1",
		"-bsf:v", "h264_mp4toannexb", "-f", "h264", tmp)
	cmd.Stderr = os.Stderr
	fmt.Fprintf(os.Stderr, "bench: encoding %s (%d s of 1080p30, once; about a minute)\n", path, clipSeconds)
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("encode bench clip: %w", err)
	}
	return os.Rename(tmp, path)
}
