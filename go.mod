module github.com/kvscamd/kvscamd

go 1.25.0

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/at-wat/ebml-go v0.19.4 // indirect
	github.com/aws/aws-sdk-go-v2 v1.48.0 // indirect
	github.com/aws/aws-sdk-go-v2/credentials v1.20.16 // indirect
	github.com/aws/aws-sdk-go-v2/internal/configsources v1.5.11 // indirect
	github.com/aws/aws-sdk-go-v2/internal/endpoints/v2 v2.8.11 // indirect
	github.com/aws/aws-sdk-go-v2/service/kinesisvideo v1.34.0 // indirect
	github.com/aws/smithy-go v1.28.9 // indirect
	github.com/bluenviron/mediacommon/v2 v2.9.2 // indirect
	golang.org/x/sync v0.10.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
)
