package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In the file it is an integer (bytes) or a
// string with a unit: B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB
// (powers of 1024), e.g. "1GiB" or "512 MB". Units are case-insensitive.
type Size int64

// Size units.
const (
	B   Size = 1
	KB  Size = 1000
	MB  Size = 1000 * KB
	GB  Size = 1000 * MB
	TB  Size = 1000 * GB
	KiB Size = 1024
	MiB Size = 1024 * KiB
	GiB Size = 1024 * MiB
	TiB Size = 1024 * GiB
)

// sizeUnits lists units from largest to smallest so that MarshalText
// picks the shortest exact spelling; binary units come first at each
// magnitude because ring sizes are usually powers of two.
var sizeUnits = []struct {
	name string
	size Size
}{
	{"TiB", TiB}, {"TB", TB}, {"GiB", GiB}, {"GB", GB},
	{"MiB", MiB}, {"MB", MB}, {"KiB", KiB}, {"KB", KB}, {"B", B},
}

// ParseSize parses a size such as "1GiB", "1.5 GB", "4096" or "0".
func ParseSize(s string) (Size, error) {
	v, err := parseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return v, nil
}

// parseBytes does the work of ParseSize and ParseRate; its errors leave
// out the input so that each caller can name what it was parsing.
func parseBytes(s string) (Size, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New(`empty; write a number of bytes or a number with a unit, e.g. "1GiB"`)
	}
	i := strings.IndexFunc(in, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' })
	num, unit := in, ""
	if i >= 0 {
		num, unit = in[:i], strings.TrimSpace(in[i:])
	}
	mult := B
	if unit != "" {
		found := false
		for _, u := range sizeUnits {
			if strings.EqualFold(unit, u.name) {
				mult, found = u.size, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown unit %q; use B, KB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB (x1024)", unit)
		}
	}
	if n, err := strconv.ParseUint(num, 10, 63); err == nil {
		if n > uint64(math.MaxInt64/int64(mult)) {
			return 0, errors.New("too large")
		}
		return Size(n) * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf(`%q is not a number; write e.g. "1GiB" or "1073741824"`, num)
	}
	if f < 0 {
		return 0, errors.New("must not be negative")
	}
	v := math.Round(f * float64(mult))
	if v >= math.MaxInt64 {
		return 0, errors.New("too large")
	}
	return Size(v), nil
}

// String spells the size with the largest unit that divides it exactly.
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	if s < 0 {
		return strconv.FormatInt(int64(s), 10)
	}
	for _, u := range sizeUnits {
		if s%u.size == 0 {
			if u.size == B {
				return strconv.FormatInt(int64(s), 10)
			}
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Rate is a data rate in bytes per second, written like a Size with an
// optional "/s" suffix: "1MB/s", "500KiB", "0".
type Rate int64

// ParseRate parses a rate such as "2MB/s" or "0".
func ParseRate(s string) (Rate, error) {
	v, err := parseBytes(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	return Rate(v), nil
}

// String spells the rate like a Size followed by "/s"; 0 stays "0".
func (r Rate) String() string {
	if r == 0 {
		return "0"
	}
	return Size(r).String() + "/s"
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Duration is a time.Duration written as a Go duration string ("2s",
// "1h30m"). A bare number is rejected because its unit would be a guess.
type Duration time.Duration

// ParseDuration parses a duration such as "2s" or "24h".
func ParseDuration(s string) (Duration, error) {
	in := strings.TrimSpace(s)
	d, err := time.ParseDuration(in)
	if err != nil {
		if _, nerr := strconv.ParseFloat(in, 64); nerr == nil && in != "0" {
			return 0, fmt.Errorf("duration %q has no unit; write it as a string with a unit, e.g. \"%ss\"", s, in)
		}
		return 0, fmt.Errorf("duration %q: not a duration; write e.g. \"2s\", \"500ms\" or \"24h\"", s)
	}
	return Duration(d), nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
