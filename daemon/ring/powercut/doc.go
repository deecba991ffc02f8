// Package powercut holds the ring's power-cut test: `kvscamd run` inside a
// QEMU virtual machine (TCG, Debian's kernel, a busybox initramfs) with its
// state directory on an ext4 virtio disk, killed with SIGKILL at random
// moments, booted again, and left to recover and upload to a kvslocal
// endpoint on the host. See powercut_test.go for what it asserts and why
// SIGKILL of QEMU models a power cut.
//
// The package has no code of its own besides the test; guestfwd/ is the
// small TCP relay that runs in the guest.
package powercut
