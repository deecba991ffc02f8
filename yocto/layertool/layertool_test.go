package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEscapeRoundTrip(t *testing.T) {
	for path, esc := range map[string]string{
		"github.com/BurntSushi/toml": "github.com/!burnt!sushi/toml",
		"golang.org/x/sys":           "golang.org/x/sys",
	} {
		if got := escape(path); got != esc {
			t.Errorf("escape(%q) = %q, want %q", path, got, esc)
		}
		if got := unescape(esc); got != path {
			t.Errorf("unescape(%q) = %q, want %q", esc, got, path)
		}
	}
}

func TestIdentifyLicence(t *testing.T) {
	own, err := ownLicence("../..")
	if err != nil || own != "Apache-2.0" {
		t.Fatalf("LICENSE identified as %q, %v; want Apache-2.0", own, err)
	}
	mit := "Permission is hereby granted, free of charge, to any person obtaining a copy"
	if id := identifyLicence([]byte(mit)); id != "MIT" {
		t.Errorf("MIT text identified as %q", id)
	}
	if id := identifyLicence([]byte("All rights reserved. Do not copy.")); id != "" {
		t.Errorf("a proprietary notice identified as %q, want unknown", id)
	}
}

// recipe builds the statements bbparse would print for a do_install body
// and USERADD_PARAM.
func recipe(install, useradd string) (*parsed, stmt) {
	fn := stmt{File: "r.bb", Line: 1, Kind: "function", Name: "do_install:append", Value: install}
	return &parsed{stmts: []stmt{
		fn,
		{File: "r.bb", Line: 2, Kind: "assign", Name: "USERADD_PARAM:${PN}", Op: "=", Value: `"` + useradd + `"`},
	}}, fn
}

func TestLintInstallAndUser(t *testing.T) {
	repo := "../.."
	good := `mv ${D}${bindir}/daemon ${D}${bindir}/kvscamd
    install -d ${D}${sysconfdir}/kvscamd
    install -m 0640 ${S}/src/${GO_IMPORT}/systemd/kvscamd.example.toml ${D}${sysconfdir}/kvscamd/kvscamd.toml
    install -m 0644 ${S}/src/${GO_IMPORT}/systemd/kvscamd.service ${D}${systemd_system_unitdir}/`
	user := "--system --home-dir /var/lib/kvscamd --groups video --user-group kvscamd"
	for _, tc := range []struct {
		name, install, useradd, want string
	}{
		{"good", good, user, ""},
		{"missing source", strings.Replace(good, "kvscamd.service", "kvscamd.serv", 1), user, "systemd/kvscamd.serv from the source tree, which does not exist"},
		{"binary not installed", strings.Replace(good, "${bindir}/kvscamd", "${bindir}/kvscam", 1), user, "ExecStart binary is not installed"},
		{"wrong group", good, strings.Replace(user, "video", "audio", 1), "to group video"},
		{"wrong home", good, strings.Replace(user, "/var/lib/kvscamd", "/home/kvscamd", 1), "the home /var/lib/kvscamd"},
	} {
		rec, fn := recipe(tc.install, tc.useradd)
		var problems []string
		addf := func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }
		installed := lintInstall(repo, fn, rec, "github.com/kvscamd/kvscamd", addf)
		lintUser(repo, rec, addf)
		got := strings.Join(problems, "\n")
		if tc.want == "" && got != "" {
			t.Errorf("%s: problems %q", tc.name, got)
		}
		if tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: problems %q, want one containing %q", tc.name, got, tc.want)
		}
		if tc.name == "good" {
			for _, p := range []string{"${sysconfdir}/kvscamd/kvscamd.toml", "${systemd_system_unitdir}/kvscamd.service", "${bindir}/kvscamd"} {
				if !installed[p] {
					t.Errorf("good: %s not seen as installed (have %v)", p, installed)
				}
			}
		}
	}
}

func TestGoSumKeys(t *testing.T) {
	dir := t.TempDir()
	sum := "example.com/a v1.0.0 h1:x=\nexample.com/a v1.0.0/go.mod h1:y=\nexample.com/b v0.1.0/go.mod h1:z=\n"
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), []byte(sum), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := readGoSum(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[modFile]bool{
		{Path: "example.com/a", Version: "v1.0.0"}:                true,
		{Path: "example.com/b", Version: "v0.1.0", ModOnly: true}: true,
		{Path: "example.com/b", Version: "v0.1.0"}:                false, // only its go.mod is vouched for
	} {
		if set[m.goSumKey()] != want {
			t.Errorf("%s in go.sum: %v, want %v", m.goSumKey(), !want, want)
		}
	}
}

func TestSeriesTable(t *testing.T) {
	goLine, err := goDirective("../..")
	if err != nil {
		t.Fatal(err)
	}
	if r := series["wrynose"]; !r.gomod || versionLess(r.goVersion, goLine) {
		t.Errorf("wrynose (Go %s) cannot build a module needing Go %s", r.goVersion, goLine)
	}
	if !versionLess("1.22", "1.25") || versionLess("1.26", "1.25") {
		t.Error("versionLess orders versions wrongly")
	}
}
