//go:build !linux

package v4l2

import (
	"errors"

	"github.com/kvscamd/kvscamd/drivers"
)

// ErrUnavailable is returned by New on systems without V4L2.
var ErrUnavailable = errors.New("v4l2: V4L2 capture exists only on Linux; use driver = \"exec\" or \"file\" here")

// New reports that this build cannot capture from V4L2 devices.
func New(cfg Config) (drivers.Source, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return nil, ErrUnavailable
}

// openDevice exists so that the capture loop builds everywhere; New never
// hands it out.
func openDevice(*Source) (session, error) { return nil, &fatalError{ErrUnavailable} }

// Probe reports that this build cannot talk to V4L2 devices.
func Probe(string) (Info, error) { return Info{}, ErrUnavailable }
