package config

import "github.com/kvscamd/kvscamd/credentials"

// CredentialsConfig maps the [credentials] table, thing_name and region
// onto the credentials package's configuration.
func (c *Config) CredentialsConfig() credentials.Config {
	cr := c.Credentials
	return credentials.Config{
		Source:          string(cr.Source),
		Endpoint:        cr.Endpoint,
		RoleAlias:       cr.RoleAlias,
		ThingName:       c.ThingName,
		Cert:            cr.Cert,
		Key:             cr.Key,
		CA:              cr.CA,
		AccessKeyID:     cr.AccessKeyID,
		SecretAccessKey: cr.SecretAccessKey,
		SessionToken:    cr.SessionToken,
		Region:          c.Region,
	}
}
