package uapi

import "unsafe"

// An ioctl request number is _IOC(dir, type, nr, size): the data
// direction, a driver letter ('V' for V4L2), a command number and the size
// of the struct passed. The size in the number is what lets the kernel
// tell the 32-bit and 64-bit layouts of one struct apart, so every number
// here is computed from the Go struct's unsafe.Sizeof. The field widths
// and direction values are per architecture (ioc_*.go).
const (
	iocNRBits   = 8
	iocTypeBits = 8

	iocNRShift   = 0
	iocTypeShift = iocNRShift + iocNRBits
	iocSizeShift = iocTypeShift + iocTypeBits
	iocDirShift  = iocSizeShift + iocSizeBits

	// iocMaxSize is the largest struct an ioctl number can carry.
	iocMaxSize = 1<<iocSizeBits - 1

	iocR  = iocRead << iocDirShift
	iocW  = iocWrite << iocDirShift
	iocWR = (iocRead | iocWrite) << iocDirShift

	// v4l2Type is the V4L2 ioctls' driver letter.
	v4l2Type = 'V' << iocTypeShift
)

// int32Size is the size of the C int that VIDIOC_STREAMON/OFF take.
const int32Size = unsafe.Sizeof(int32(0))

// The V4L2 ioctls the driver issues, with their command numbers.
const (
	VIDIOC_QUERYCAP  = iocR | v4l2Type | 0<<iocNRShift | unsafe.Sizeof(Capability{})<<iocSizeShift
	VIDIOC_ENUM_FMT  = iocWR | v4l2Type | 2<<iocNRShift | unsafe.Sizeof(FmtDesc{})<<iocSizeShift
	VIDIOC_G_FMT     = iocWR | v4l2Type | 4<<iocNRShift | unsafe.Sizeof(Format{})<<iocSizeShift
	VIDIOC_S_FMT     = iocWR | v4l2Type | 5<<iocNRShift | unsafe.Sizeof(Format{})<<iocSizeShift
	VIDIOC_REQBUFS   = iocWR | v4l2Type | 8<<iocNRShift | unsafe.Sizeof(RequestBuffers{})<<iocSizeShift
	VIDIOC_QUERYBUF  = iocWR | v4l2Type | 9<<iocNRShift | unsafe.Sizeof(Buffer{})<<iocSizeShift
	VIDIOC_QBUF      = iocWR | v4l2Type | 15<<iocNRShift | unsafe.Sizeof(Buffer{})<<iocSizeShift
	VIDIOC_DQBUF     = iocWR | v4l2Type | 17<<iocNRShift | unsafe.Sizeof(Buffer{})<<iocSizeShift
	VIDIOC_STREAMON  = iocW | v4l2Type | 18<<iocNRShift | int32Size<<iocSizeShift
	VIDIOC_STREAMOFF = iocW | v4l2Type | 19<<iocNRShift | int32Size<<iocSizeShift
	VIDIOC_G_PARM    = iocWR | v4l2Type | 21<<iocNRShift | unsafe.Sizeof(StreamParm{})<<iocSizeShift
	VIDIOC_S_PARM    = iocWR | v4l2Type | 22<<iocNRShift | unsafe.Sizeof(StreamParm{})<<iocSizeShift
	VIDIOC_G_CTRL    = iocWR | v4l2Type | 27<<iocNRShift | unsafe.Sizeof(Control{})<<iocSizeShift
	VIDIOC_S_CTRL    = iocWR | v4l2Type | 28<<iocNRShift | unsafe.Sizeof(Control{})<<iocSizeShift
	VIDIOC_QUERYCTRL = iocWR | v4l2Type | 36<<iocNRShift | unsafe.Sizeof(QueryCtrl{})<<iocSizeShift
)

// The largest struct must fit the size field, or its numbers would be
// garbage; this fails to compile if one does not.
const _ = uint(iocMaxSize - unsafe.Sizeof(Format{}))
