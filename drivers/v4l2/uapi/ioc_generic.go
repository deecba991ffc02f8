//go:build !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le)

package uapi

// The ioctl number layout of most architectures (asm-generic/ioctl.h):
// x86, ARM, arm64, RISC-V, LoongArch, s390.
const (
	iocSizeBits = 14
	iocWrite    = 1
	iocRead     = 2
)
