# kvscamd build, test and lint entry points. CI runs `make test` (see .ci/run).

GO         ?= go
BIN        := bin/kvscamd
# The V4L2 driver needs cgo (go4vl binds the kernel headers); CGO_ENABLED=0
# builds a pure-Go binary whose v4l2 driver explains how to rebuild.
CGO_ENABLED ?= 1
VERSION    ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BENCHTIME  ?= 1s
FUZZTIME   ?= 10s
# Pinned so that lint results do not change under us. Staticcheck 2026.1
# (module v0.7.0) needs Go >= 1.25, like this module, and handles Go 1.26.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0

.PHONY: all build kvslocal demo test test-go test-systemd test-powercut bench lint fuzz torture cross clean

all: build

build:
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./daemon

# The local KVS endpoint, for manual runs against kvscamd.
kvslocal:
	$(GO) build -trimpath -o bin/kvslocal ./kvslocal/cmd/kvslocal

# The whole pipeline on this machine against a local KVS endpoint, no AWS
# account needed: DEMO_SECONDS of a test clip replayed as a camera, what the
# endpoint received left under demo-out/.
DEMO_SECONDS ?= 20
demo: build
	DEMO_SECONDS=$(DEMO_SECONDS) $(GO) run ./daemon/demo -kvscamd $(BIN) -out demo-out

# Further test targets are added as prerequisites of test, e.g.
#   test: test-vm
test: test-go
test: test-systemd

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Unit, sysusers and tmpfiles checks; needs systemd-analyze (package systemd).
test-systemd: build
	bash systemd/verify.sh $(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Runs every Fuzz target of every package for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# The ring buffer's crash test with many more SIGKILL cycles than make test.
RING_TORTURE_CYCLES ?= 2000
torture:
	RING_TORTURE_CYCLES=$(RING_TORTURE_CYCLES) $(GO) test -race -count=1 -timeout 90m -run '^TestTorture$$' -v ./daemon/ring/

# The ring's power-cut test with many more cycles than make test: kvscamd
# in a QEMU VM, SIGKILLed at random moments (daemon/ring/powercut). Needs
# the V4L2 VM test's packages (qemu-system-x86, busybox-static, ...) and
# e2fsprogs. POWERCUT_SEED repeats a run's kill moments.
POWERCUT_CYCLES ?= 50
POWERCUT_SEED ?=
test-powercut:
	KVSCAMD_POWERCUT_CYCLES=$(POWERCUT_CYCLES) KVSCAMD_POWERCUT_SEED=$(POWERCUT_SEED) $(GO) test -count=1 -timeout 120m -run '^TestPowerCut$$' -v ./daemon/ring/powercut/

# Cross builds for Raspberry Pis with cgo (V4L2). Needs Debian's
# gcc-aarch64-linux-gnu and gcc-arm-linux-gnueabihf. ARMv6 (Pi Zero/1) needs
# an ARMv6 toolchain for cgo; CGO_ENABLED=0 GOARM=6 builds run there without
# the V4L2 driver.
cross:
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvscamd-linux-arm64 ./daemon
	CGO_ENABLED=1 GOOS=linux GOARCH=arm GOARM=7 CC=arm-linux-gnueabihf-gcc $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvscamd-linux-armv7 ./daemon
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvscamd-linux-armv6-nocgo ./daemon

clean:
	rm -rf bin/ demo-out/ build/
