#!/bin/bash
# Regenerates the H.264 test clips in this folder with ffmpeg and libx264
# (Debian: apt-get install ffmpeg). Every clip is Annex-B, 30 fps and free
# of B-frames (-bf 0), as camera encoders and Kinesis Video Streams expect.
# The frame count of each clip is in its name's companion table, clips.txt.
set -euo pipefail
cd "$(dirname "$0")"

enc() { # name seconds size extra-x264-params extra-ffmpeg-args...
	local name=$1 secs=$2 size=$3 params=$4
	shift 4
	ffmpeg -v error -y -f lavfi -i "testsrc2=size=${size}:rate=30" -t "$secs" \
		-c:v libx264 -preset veryfast -pix_fmt yuv420p -g 30 -bf 0 -b:v 250k \
		-x264-params "$params" "$@" -bsf:v h264_mp4toannexb -f h264 "$name"
}

# What a Raspberry Pi encoder emits: Constrained Baseline, SPS/PPS repeated
# before every IDR, no AUD.
enc baseline-repeat.h264 5 320x240 "repeat-headers=1" -profile:v baseline
# High profile with an access unit delimiter before every picture.
enc high-aud.h264 4 320x240 "aud=1" -profile:v high
# Four slices per picture: several VCL NAL units make one access unit.
enc multislice.h264 3 320x240 "slices=4:aud=1" -profile:v main
# A larger picture size, so a stream can switch resolution mid-way.
enc baseline-360p.h264 2 640x360 "repeat-headers=1" -profile:v baseline

# A stream that starts in the middle of a GOP: the first 12 pictures of
# high-aud.h264 are cut off, so the first 18 frames have no IDR before them.
python3 - <<'PY'
data = open("high-aud.h264", "rb").read()
aud = b"\x00\x00\x00\x01\x09"
starts = []
i = data.find(aud)
while i >= 0:
    starts.append(i)
    i = data.find(aud, i + 1)
open("midgop.h264", "wb").write(data[starts[12]:])
PY
ls -l *.h264
