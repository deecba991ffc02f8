package sender

// TEMPORARY stub until the real setters land.

func (s *Sender) SetRateLimit(bps int64) error { return nil }
func (s *Sender) SetMode(m string) error       { return nil }
