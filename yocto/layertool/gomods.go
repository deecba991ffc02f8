package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// platforms are the targets whose package graphs decide which modules the
// recipe fetches: the Pi targets plus amd64 for x86 images. Modules are
// the same for all of them today; listing several keeps a build-tagged
// dependency from going missing on one machine.
var platforms = [][2]string{{"linux", "arm64"}, {"linux", "arm"}, {"linux", "amd64"}}

// recipeCgo is the recipe's CGO_ENABLED, which decides the files, and so
// the packages, each build takes; lint holds the recipe to it.
const recipeCgo = "0"

// modFile is one gomod:// entry: a module zip, or only its go.mod file
// when the build needs the module for the build list but no package of it.
type modFile struct {
	Path, Version string
	ModOnly       bool
	SHA256        string
}

func (m modFile) uri() string {
	s := "gomod://" + m.Path + ";version=" + m.Version
	if m.ModOnly {
		s += ";mod=1"
	}
	return s + ";sha256sum=" + m.SHA256
}

// licFile is one licence file of a module the binary links, with its path
// under the module cache (module paths escaped the way the cache stores
// them) and its SPDX identifier.
type licFile struct {
	Rel, MD5, SPDX string
}

// resolution is what the Go tool needs offline to build the packages.
type resolution struct {
	Mods []modFile
	Lics []licFile
}

// goEnv returns the value of a go env variable in the caller's environment.
func goEnv(name string) (string, error) {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// resolve lists the modules and licence files the packages need, the way
// BitBake's build sees them: it resolves the packages with an empty module
// cache that is filled only from the caller's module cache (used as a
// file:// proxy, so no network is needed), then records every file that
// ended up in the download cache. The caller's cache must hold the
// modules, which "go mod download" ensures.
func resolve(repo string, pkgs []string) (*resolution, error) {
	cache, err := goEnv("GOMODCACHE")
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "layertool-modcache-")
	if err != nil {
		return nil, fmt.Errorf("layertool: module cache: %w", err)
	}
	env := append(os.Environ(),
		"GOMODCACHE="+tmp,
		"GOPROXY=file://"+filepath.ToSlash(filepath.Join(cache, "cache", "download")),
		"GOFLAGS=-mod=readonly",
		"GOSUMDB=off", // go.sum alone vouches for every module
		"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=",
		"GOTOOLCHAIN=local",
		"GOWORK=off",
		"CGO_ENABLED="+recipeCgo, // as the recipe builds
	)
	defer func() {
		clean := exec.Command("go", "clean", "-modcache")
		clean.Env = env
		clean.Dir = repo
		_ = clean.Run()
		os.RemoveAll(tmp)
	}()

	// Directories of the packages linked into the binary, by module root.
	pkgDirs := map[string]map[string]bool{}
	for _, p := range platforms {
		cmd := exec.Command("go", append([]string{"list", "-deps", "-f",
			"{{with .Module}}{{if not .Main}}{{.Dir}}\t{{$.Dir}}{{end}}{{end}}"}, pkgs...)...)
		cmd.Env = append(env, "GOOS="+p[0], "GOARCH="+p[1])
		cmd.Dir = repo
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("layertool: go list for %s/%s: %w\n%s(the module cache must hold every module: run \"go mod download\")", p[0], p[1], err, stderr.String())
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			modDir, pkgDir, ok := strings.Cut(sc.Text(), "\t")
			if !ok {
				continue
			}
			if pkgDirs[modDir] == nil {
				pkgDirs[modDir] = map[string]bool{}
			}
			pkgDirs[modDir][pkgDir] = true
		}
	}

	var res resolution
	download := filepath.Join(tmp, "cache", "download")
	err = filepath.WalkDir(download, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || d.Name() != "@v" {
			return err
		}
		rel, err := filepath.Rel(download, filepath.Dir(path))
		if err != nil {
			return err
		}
		module := unescape(filepath.ToSlash(rel))
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		zips := map[string]bool{}
		for _, e := range entries {
			if v, ok := strings.CutSuffix(e.Name(), ".zip"); ok {
				zips[v] = true
			}
		}
		for _, e := range entries {
			v, isZip := strings.CutSuffix(e.Name(), ".zip")
			if !isZip {
				var isMod bool
				if v, isMod = strings.CutSuffix(e.Name(), ".mod"); !isMod || zips[v] {
					continue
				}
			}
			sum, err := fileSHA256(filepath.Join(path, e.Name()))
			if err != nil {
				return err
			}
			res.Mods = append(res.Mods, modFile{Path: module, Version: v, ModOnly: !isZip, SHA256: sum})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layertool: walk module cache: %w", err)
	}
	sort.Slice(res.Mods, func(i, j int) bool {
		a, b := res.Mods[i], res.Mods[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Version < b.Version
	})

	seen := map[string]bool{}
	for modDir, dirs := range pkgDirs {
		for dir := range dirs {
			// Licence files from the package directory up to the module
			// root: vendored copies of other code (such as a package taken
			// from the Go tree) carry their own licence next to it.
			for d := dir; ; d = filepath.Dir(d) {
				entries, err := os.ReadDir(d)
				if err != nil {
					return nil, fmt.Errorf("layertool: licences of %s: %w", d, err)
				}
				for _, e := range entries {
					if e.IsDir() || !isLicenceName(e.Name()) {
						continue
					}
					full := filepath.Join(d, e.Name())
					rel, _ := filepath.Rel(tmp, full)
					rel = filepath.ToSlash(rel)
					if seen[rel] {
						continue
					}
					seen[rel] = true
					text, err := os.ReadFile(full)
					if err != nil {
						return nil, fmt.Errorf("layertool: licence: %w", err)
					}
					id := identifyLicence(text)
					if id == "" {
						return nil, fmt.Errorf("layertool: %s: licence text not recognised; add its SPDX identifier to identifyLicence", rel)
					}
					sum := md5.Sum(text)
					res.Lics = append(res.Lics, licFile{Rel: rel, MD5: hex.EncodeToString(sum[:]), SPDX: id})
				}
				if d == modDir || len(d) <= len(modDir) {
					break
				}
			}
		}
	}
	sort.Slice(res.Lics, func(i, j int) bool { return res.Lics[i].Rel < res.Lics[j].Rel })
	return &res, nil
}

func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// unescape undoes the module cache's case encoding ("!b" stands for "B").
func unescape(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '!' && i+1 < len(p) {
			i++
			b.WriteString(strings.ToUpper(p[i : i+1]))
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// escape applies the module cache's case encoding.
func escape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			b.WriteRune(r + 'a' - 'A')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isLicenceName(name string) bool {
	u := strings.ToUpper(name)
	for _, p := range []string{"LICENSE", "LICENCE", "COPYING"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// identifyLicence names the licence of a text by phrases that only its
// licence contains; "" means unknown, which needs a human to look.
func identifyLicence(text []byte) string {
	t := strings.Join(strings.Fields(string(text)), " ")
	has := func(s string) bool { return strings.Contains(t, s) }
	switch {
	case has("Eclipse Public License") && has("Eclipse Distribution License v1.0"):
		// Dual EPL-2.0 or EDL-1.0 (paho): used under the EDL, which is
		// the BSD 3-clause licence.
		return "BSD-3-Clause"
	case has("Apache License") && has("Version 2.0"):
		return "Apache-2.0"
	case has("Mozilla Public License Version 2.0"):
		return "MPL-2.0"
	case has("Permission is hereby granted, free of charge"):
		return "MIT"
	case has("Permission to use, copy, modify, and/or distribute this software"):
		return "ISC"
	case has("Redistribution and use in source and binary forms") && has("Neither the name"):
		return "BSD-3-Clause"
	case has("Redistribution and use in source and binary forms"):
		return "BSD-2-Clause"
	}
	return ""
}

// goSum is the set of go.sum lines, keyed "module version" for module
// zips and "module version/go.mod" for go.mod files.
func readGoSum(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("layertool: %w", err)
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			set[f[0]+" "+f[1]] = true
		}
	}
	return set, nil
}

func (m modFile) goSumKey() string {
	if m.ModOnly {
		return m.Path + " " + m.Version + "/go.mod"
	}
	return m.Path + " " + m.Version
}
