package config

// TEMPORARY stub until the real diff lands.

type Effect int

const (
	EffectLive Effect = iota
	EffectRestartSource
	EffectRestartFragmenter
	EffectReopenRing
	EffectRestartDaemon
)

type Change struct {
	Key, Old, New string
	Effect        Effect
}

func DiffStream(old, new Stream) []Change {
	var cs []Change
	add := func(k, o, n string, e Effect) {
		if o != n {
			cs = append(cs, Change{k, o, n, e})
		}
	}
	add("upload_rate_limit", old.UploadRateLimit.String(), new.UploadRateLimit.String(), EffectLive)
	add("mode", string(old.Mode), string(new.Mode), EffectLive)
	add("fps", itoa(old.FPS), itoa(new.FPS), EffectRestartSource)
	add("keyframe_interval", old.KeyframeInterval.String(), new.KeyframeInterval.String(), EffectRestartFragmenter)
	add("ring_size", old.RingSize.String(), new.RingSize.String(), EffectReopenRing)
	add("path", old.Path, new.Path, EffectRestartSource)
	return cs
}

func itoa(i int) string { return Size(i).String() }

func DiffDaemon(old, new *Config) []Change {
	var cs []Change
	if old.LogLevel != new.LogLevel {
		cs = append(cs, Change{"log_level", string(old.LogLevel), string(new.LogLevel), EffectLive})
	}
	if old.Region != new.Region {
		cs = append(cs, Change{"region", old.Region, new.Region, EffectRestartDaemon})
	}
	return cs
}

func DiffStreams(old, new *Config) (added, removed []string, changed map[string][]Change) {
	changed = map[string][]Change{}
	om := map[string]Stream{}
	for _, s := range old.Streams {
		om[s.Name] = s
	}
	nm := map[string]bool{}
	for _, s := range new.Streams {
		nm[s.Name] = true
		o, ok := om[s.Name]
		if !ok {
			added = append(added, s.Name)
			continue
		}
		if d := DiffStream(o, s); len(d) > 0 {
			changed[s.Name] = d
		}
	}
	for _, s := range old.Streams {
		if !nm[s.Name] {
			removed = append(removed, s.Name)
		}
	}
	return
}
