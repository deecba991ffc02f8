package provision

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Where the serial number comes from, in order of preference: the board's
// own serial (Raspberry Pis have one in the device tree), the machine id
// systemd creates at first boot, then a hardware address.
var serialFiles = []string{"/proc/device-tree/serial-number", "/etc/machine-id"}

// DeviceSerial returns the best serial number this machine offers.
func DeviceSerial() (string, error) {
	for _, f := range serialFiles {
		if s, err := readSerial(f); err == nil && s != "" {
			return s, nil
		}
	}
	ifs, err := net.Interfaces()
	if err == nil {
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) >= 6 && !allZero(i.HardwareAddr) {
				return strings.ReplaceAll(i.HardwareAddr.String(), ":", ""), nil
			}
		}
	}
	return "", fmt.Errorf("provision: no serial number: none of %s is readable and no network interface has a hardware address; set serial_number in [provisioning]",
		strings.Join(serialFiles, ", "))
}

// readSerial reads a serial number file: the device tree's ends in NUL.
func readSerial(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(bytes.TrimSpace(bytes.TrimRight(data, "\x00")))
	if len(s) > MaxSerialLen {
		return "", errors.New("too long")
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return "", errors.New("not printable")
		}
	}
	return s, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
