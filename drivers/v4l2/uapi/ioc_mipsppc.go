//go:build mips || mipsle || mips64 || mips64le || ppc64 || ppc64le

package uapi

// MIPS and PowerPC give the direction three bits and the size 13
// (their asm/ioctl.h), with other direction values.
const (
	iocSizeBits = 13
	iocWrite    = 4
	iocRead     = 2
)
