package ring

import "testing"

func TestMetas(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 8 << 20})
	if _, ok := r.LastMeta(); ok {
		t.Fatal("LastMeta on an empty ring")
	}
	var ids []ID
	for i := range int64(4) {
		f := genFragment(i, 1000)
		ids = append(ids, mustAppend(t, r, &f))
	}
	if err := r.Ack(ids[1]); err != nil {
		t.Fatal(err)
	}
	var got []Meta
	r.Metas(ids[1], func(m Meta) bool { got = append(got, m); return len(got) < 2 })
	if len(got) != 2 || got[0].ID != ids[1] || !got[0].Acked || got[1].ID != ids[2] || got[1].Acked {
		t.Fatalf("Metas from %d = %+v; want ids %d (acked) and %d, then stop", ids[1], got, ids[1], ids[2])
	}
	f := genFragment(2, 1000)
	if !got[1].Start.Equal(f.Time()) || got[1].Duration != f.Duration || got[1].Size < int64(len(f.Cluster)) || !got[1].End().Equal(f.End()) {
		t.Errorf("meta %+v does not describe fragment %d (%v + %v, %d bytes)", got[1], ids[2], f.Time(), f.Duration, len(f.Cluster))
	}
	last, ok := r.LastMeta()
	if !ok || last.ID != ids[3] {
		t.Errorf("LastMeta = %+v, %v; want id %d", last, ok, ids[3])
	}
}
