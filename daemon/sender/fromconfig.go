package sender

import (
	"github.com/kvscamd/kvscamd/daemon/config"
)

// ConfigFrom maps the configuration file's keys for one [[stream]] onto a
// sender Config. The caller adds what the file does not hold: Ring,
// Credentials and Logger.
//
//	region            -> Region
//	kvs.endpoint      -> ControlEndpoint
//	kvs.create_stream -> CreateStream
//	kvs.retention     -> Retention
//	stream.name       -> Stream (thing_name when empty)
//	stream.mode       -> Mode
//	stream.upload_rate_limit -> RateLimit
func ConfigFrom(c *config.Config, st *config.Stream) Config {
	name := st.Name
	if name == "" {
		name = c.ThingName
	}
	return Config{
		Stream:          name,
		Region:          c.Region,
		ControlEndpoint: c.KVS.Endpoint,
		CreateStream:    c.KVS.CreateStream,
		Retention:       c.KVS.Retention.Std(),
		RateLimit:       int64(st.UploadRateLimit),
		Mode:            string(st.Mode),
	}
}
