package config

import (
	"strings"
	"testing"
	"time"
)

// sizeCases feeds the size tests, benchmarks and fuzz seeds.
var sizeCases = []struct {
	in   string
	want Size
	err  string // substring of the error; "" = no error
}{
	{"0", 0, ""},
	{"4096", 4096, ""},
	{" 4096 ", 4096, ""},
	{"1B", 1, ""},
	{"1KB", 1000, ""},
	{"1kb", 1000, ""},
	{"1KiB", 1024, ""},
	{"16MiB", 16 << 20, ""},
	{"16 MiB", 16 << 20, ""},
	{"1GiB", 1 << 30, ""},
	{"1gib", 1 << 30, ""},
	{"2GB", 2_000_000_000, ""},
	{"1TiB", 1 << 40, ""},
	{"3TB", 3_000_000_000_000, ""},
	{"1.5GiB", 3 << 29, ""},
	{"0.5KB", 500, ""},
	{"1.000000", 1, ""}, // what the TOML library hands over for a float
	{"", 0, "empty"},
	{"GiB", 0, "not a number"},
	{"1 XB", 0, `unknown unit "XB"`},
	{"1 Gb", GB, ""}, // units are case-insensitive: Gb is GB
	{"-1", 0, "negative"},
	{"-1.5MB", 0, "negative"},
	{"1e9", 0, `unknown unit "e9"`},
	{"9223372036854775807", 1<<63 - 1, ""},
	{"9223372036854775808", 0, "too large"},
	{"8388608TiB", 0, "too large"},
	{"9000000000TB", 0, "too large"},
	{"NaN", 0, `unknown unit "NaN"`},
	{"1..2MB", 0, "not a number"},
}

func TestParseSize(t *testing.T) {
	for _, c := range sizeCases {
		got, err := ParseSize(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSize(%q) = %v, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, c := range []struct {
		in   Size
		want string
	}{
		{0, "0"}, {1, "1"}, {999, "999"}, {1000, "1KB"}, {1024, "1KiB"},
		{16 * MiB, "16MiB"}, {GiB, "1GiB"}, {2 * GB, "2GB"}, {1536, "1536"},
		{3 * GiB / 2, "1536MiB"}, {TiB * 3, "3TiB"}, {-5, "-5"},
	} {
		if got := c.in.String(); got != c.want {
			t.Errorf("Size(%d).String() = %q; want %q", int64(c.in), got, c.want)
		}
		if c.in < 0 {
			continue
		}
		back, err := ParseSize(c.in.String())
		if err != nil || back != c.in {
			t.Errorf("round trip of %d: %v, %v", int64(c.in), back, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Rate
		err  string
	}{
		{"0", 0, ""},
		{"1MB/s", 1_000_000, ""},
		{"1MB", 1_000_000, ""},
		{"512 KiB/s", 512 * 1024, ""},
		{"100", 100, ""},
		{"/s", 0, "rate \"/s\": empty"},
		{"1 Mbit/s", 0, `unknown unit "Mbit"`},
		{"-1MB/s", 0, "negative"},
	} {
		got, err := ParseRate(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRate(%q) = %v, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %d", c.in, got, err, c.want)
			continue
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q via %q: %v, %v", c.in, got.String(), back, err)
		}
	}
	if s := Rate(250_000).String(); s != "250KB/s" {
		t.Errorf("Rate(250000).String() = %q", s)
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"2s", 2 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"24h", 24 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"0", 0, ""},
		{"-1s", -time.Second, ""}, // sign is Validate's business
		{"2", 0, `no unit; write it as a string with a unit, e.g. "2s"`},
		{"1.5", 0, "no unit"},
		{"two seconds", 0, "not a duration"},
		{"", 0, "not a duration"},
	} {
		got, err := ParseDuration(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got.Std() != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
			continue
		}
		text, _ := got.MarshalText()
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back != got {
			t.Errorf("round trip of %q via %q: %v, %v", c.in, text, back, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, c := range sizeCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		v, err := ParseSize(in)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", in, int64(v))
		}
		back, err := ParseSize(v.String())
		if err != nil || back != v {
			t.Fatalf("ParseSize(%q) = %d, but its spelling %q parses as %d, %v", in, int64(v), v.String(), int64(back), err)
		}
	})
}

func BenchmarkParseSize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range sizeCases {
			_, _ = ParseSize(c.in)
		}
	}
}
