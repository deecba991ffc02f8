//go:build !linux

package v4l2

import (
	"errors"
	"testing"
)

func TestStubExplainsUnavailable(t *testing.T) {
	_, err := New(Config{Device: "/dev/video0", Width: 640, Height: 480, FPS: 30})
	if !errors.Is(err, ErrUnavailable) || err.Error() == "" {
		t.Fatalf("New = %v, want ErrUnavailable", err)
	}
}
