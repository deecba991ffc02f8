package media

import "testing"

func TestFramePool(t *testing.T) {
	p := NewFramePool(2)
	m := p.Get()
	m.Data = append(m.Data, "abcdef"...)
	m.NALUs = append(m.NALUs, m.Data[:3], m.Data[3:])
	var f Frame
	f.Attach(m)
	if len(f.NALUs) != 2 || string(f.NALUs[1]) != "def" {
		t.Fatalf("attached NALUs %q", f.NALUs)
	}
	f.Release()
	if f.NALUs != nil {
		t.Error("Release left NALUs set")
	}
	if m2 := p.Get(); m2 != m || len(m2.Data) != 0 || len(m2.NALUs) != 0 || cap(m2.Data) < 6 {
		t.Errorf("Get after Release = %p (len %d, %d NALUs, cap %d), want %p emptied with its capacity", m2, len(m2.Data), len(m2.NALUs), cap(m2.Data), m)
	}

	// An unpooled frame releases to nothing; a full pool drops extras.
	var plain Frame
	plain.NALUs = [][]byte{[]byte("x")}
	plain.Release()
	var frames []Frame
	for range 4 {
		var fr Frame
		fr.Attach(p.Get())
		frames = append(frames, fr)
	}
	for i := range frames {
		frames[i].Release()
	}
	if n := len(p.free); n != 2 {
		t.Errorf("pool holds %d idle buffers, want its capacity 2", n)
	}
	// Last in, first out: a consumer that keeps up reuses one buffer, and
	// the idle ones are not each grown in turn by a large frame.
	a, b := p.Get(), p.Get()
	b.Data = append(b.Data, make([]byte, 100_000)...) // a key frame
	a.Free()
	b.Free()
	for range 3 {
		m := p.Get()
		if m != b {
			t.Fatalf("Get handed out %p, want the buffer given back last (%p)", m, b)
		}
		m.Free()
	}
	var none *FrameMem
	none.Free() // a source may free what it never got
	var nilPool *FramePool
	if m := nilPool.Get(); m == nil {
		t.Error("a nil pool's Get returned nil")
	}
}
