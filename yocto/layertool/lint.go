package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// series lists the Yocto releases the layer may claim in
// LAYERSERIES_COMPAT: each must ship BitBake's gomod:// fetcher (BitBake
// 2.12 and later) and a Go at least as new as go.mod's "go" line.
var series = map[string]struct {
	goVersion string
	gomod     bool
}{
	"scarthgap":  {"1.22", false}, // 5.0 LTS: BitBake 2.8 has no gomod fetcher
	"styhead":    {"1.22", false},
	"walnascar":  {"1.24", true},
	"whinlatter": {"1.25", true},
	"wrynose":    {"1.26", true}, // 6.0 LTS
}

// stmt is one top-level statement as bbparse prints it.
type stmt struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Op     string `json:"op"`
	Value  string `json:"value"`
	Export bool   `json:"export"`
}

func (s stmt) pos() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// words returns an assignment's value without quotes and line
// continuations, split into fields.
func (s stmt) words() []string {
	v := strings.TrimSpace(s.Value)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	v = strings.ReplaceAll(v, "\\\n", " ")
	return strings.Fields(v)
}

// parsed is a recipe with the files it requires, in order.
type parsed struct {
	stmts []stmt
}

func (p *parsed) assigns(name string) []stmt {
	var out []stmt
	for _, s := range p.stmts {
		if s.Kind == "assign" && s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// value joins the words of every assignment to name (=, += and friends
// alike: the lint only asks what ends up in the variable).
func (p *parsed) value(name string) []string {
	var out []string
	for _, s := range p.assigns(name) {
		if s.Op == "=" || s.Op == ":=" {
			out = out[:0]
		}
		out = append(out, s.words()...)
	}
	return out
}

func (p *parsed) function(name string) (stmt, bool) {
	for _, s := range p.stmts {
		if s.Kind == "function" && s.Name == name {
			return s, true
		}
	}
	return stmt{}, false
}

// runParser runs bbparse over files; syntax errors come back as problems.
func runParser(bbparse string, files ...string) ([]stmt, []string, error) {
	cmd := exec.Command(bbparse, files...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var problems []string
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			return nil, nil, fmt.Errorf("layertool: %s: %w: %s (build it with make lint, which needs libtree-sitter-dev and npm)", bbparse, err, stderr.String())
		}
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			problems = append(problems, l+" (BitBake grammar)")
		}
	}
	var out []stmt
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var s stmt
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, nil, fmt.Errorf("layertool: bbparse output %q: %w", sc.Text(), err)
		}
		out = append(out, s)
	}
	return out, problems, nil
}

// lint checks the layer; it returns the problems found, and an error when
// it could not check at all.
func lint(repo, bbparse string) ([]string, error) {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	// 1. Every BitBake file of the layer parses with the real grammar.
	var files []string
	for _, pat := range []string{"conf/*.conf", "recipes-*/*/*.bb", "recipes-*/*/*.bbappend", "recipes-*/*/*.inc"} {
		m, _ := filepath.Glob(filepath.Join(repo, layerDir, pat))
		files = append(files, m...)
	}
	sort.Strings(files)
	all, syntax, err := runParser(bbparse, files...)
	if err != nil {
		return nil, err
	}
	if len(syntax) > 0 {
		return syntax, nil
	}
	byFile := map[string][]stmt{}
	for _, s := range all {
		byFile[s.File] = append(byFile[s.File], s)
	}

	// 2. layer.conf.
	conf := &parsed{stmts: byFile[filepath.Join(repo, layerDir, "conf/layer.conf")]}
	colls := conf.value("BBFILE_COLLECTIONS")
	if len(colls) != 1 {
		add("%s/conf/layer.conf: BBFILE_COLLECTIONS must name one collection, has %q", layerDir, colls)
	}
	goLine, err := goDirective(repo)
	if err != nil {
		return nil, err
	}
	for _, c := range colls {
		for _, v := range []string{"BBFILE_PATTERN_", "BBFILE_PRIORITY_", "LAYERDEPENDS_", "LAYERSERIES_COMPAT_"} {
			if len(conf.value(v+c)) == 0 {
				add("%s/conf/layer.conf: %s%s is not set", layerDir, v, c)
			}
		}
		for _, s := range conf.value("LAYERSERIES_COMPAT_" + c) {
			r, ok := series[s]
			switch {
			case !ok:
				add("%s/conf/layer.conf: LAYERSERIES_COMPAT_%s: unknown release %q", layerDir, c, s)
			case !r.gomod:
				add("%s/conf/layer.conf: LAYERSERIES_COMPAT_%s: %s has no gomod:// fetcher, so the recipe cannot build there", layerDir, c, s)
			case versionLess(r.goVersion, goLine):
				add("%s/conf/layer.conf: LAYERSERIES_COMPAT_%s: %s ships Go %s, go.mod needs %s", layerDir, c, s, r.goVersion, goLine)
			}
		}
	}

	// 3. The recipe, with the files it requires.
	recipePath := filepath.Join(repo, recipeFile)
	rec := &parsed{}
	for _, s := range byFile[recipePath] {
		rec.stmts = append(rec.stmts, s)
		if s.Kind == "require" || s.Kind == "include" {
			inc := filepath.Join(filepath.Dir(recipePath), strings.TrimSpace(s.Value))
			if _, ok := byFile[inc]; !ok {
				add("%s: requires %s, which is not in the layer", s.pos(), s.Value)
			}
			rec.stmts = append(rec.stmts, byFile[inc]...)
		}
	}
	for _, inc := range []string{modsFile, licsFile, srcrevFile} {
		if !requires(byFile[recipePath], filepath.Base(inc)) {
			add("%s: does not require %s", recipeFile, filepath.Base(inc))
		}
	}
	for _, v := range []string{"SUMMARY", "HOMEPAGE", "LICENSE", "LIC_FILES_CHKSUM", "SRC_URI", "SRCREV",
		"GO_IMPORT", "GO_INSTALL", "SYSTEMD_SERVICE:${PN}", "USERADD_PACKAGES", "USERADD_PARAM:${PN}",
		"CONFFILES:${PN}", "RDEPENDS:${PN}", "FILES:${PN}"} {
		if len(rec.value(v)) == 0 {
			add("%s: %s is not set", recipeFile, v)
		}
	}
	if cgo := rec.value("CGO_ENABLED"); len(cgo) != 1 || cgo[0] != recipeCgo {
		add("%s: CGO_ENABLED is %q; the module list is resolved for CGO_ENABLED=%s (yocto/layertool), so the recipe must build that way", recipeFile, strings.Join(cgo, " "), recipeCgo)
	}
	inherits := map[string]bool{}
	for _, s := range rec.stmts {
		if s.Kind == "inherit" {
			for _, c := range strings.Fields(s.Value) {
				inherits[c] = true
			}
		}
	}
	for _, c := range []string{"go-mod", "systemd", "useradd"} {
		if !inherits[c] {
			add("%s: does not inherit %s", recipeFile, c)
		}
	}
	for _, s := range rec.stmts {
		if s.Kind == "assign" && strings.Contains(s.Value, "AUTOREV") {
			add("%s: %s uses AUTOREV: the recipe must build a pinned commit whose modules are listed", s.pos(), s.Name)
		}
		if s.Kind == "assign" && strings.HasSuffix(s.Name, "[network]") {
			add("%s: %s: no task may use the network; modules come from the gomod:// list", s.pos(), s.Name)
		}
	}

	// 4. LIC_FILES_CHKSUM: every md5 matches its file, and every licence
	// found is in LICENSE.
	modCache, err := goEnv("GOMODCACHE")
	if err != nil {
		return nil, err
	}
	licence := map[string]bool{}
	for _, w := range rec.value("LICENSE") {
		licence[strings.Trim(w, "()")] = true
	}
	goImport := first(rec.value("GO_IMPORT"))
	for _, uri := range rec.value("LIC_FILES_CHKSUM") {
		path, params := splitURI(uri)
		var local string
		switch {
		case strings.HasPrefix(path, "file://src/${GO_IMPORT}/"):
			local = filepath.Join(repo, strings.TrimPrefix(path, "file://src/${GO_IMPORT}/"))
		case strings.HasPrefix(path, "file://pkg/mod/"):
			local = filepath.Join(modCache, strings.TrimPrefix(path, "file://pkg/mod/"))
		default:
			add("%s: LIC_FILES_CHKSUM %s: expected file://src/${GO_IMPORT}/... or file://pkg/mod/...", recipeFile, path)
			continue
		}
		if params["beginline"] != "" || params["endline"] != "" {
			add("%s: LIC_FILES_CHKSUM %s: beginline/endline are not checked here; use the whole file", recipeFile, path)
		}
		b, err := os.ReadFile(local)
		if err != nil {
			add("%s: LIC_FILES_CHKSUM %s: %v", recipeFile, path, err)
			continue
		}
		sum := md5.Sum(b)
		if got := hex.EncodeToString(sum[:]); got != params["md5"] {
			add("%s: LIC_FILES_CHKSUM %s: md5 is %s, the recipe says %s", recipeFile, path, got, params["md5"])
		}
		if id := params["spdx"]; id != "" && !licence[id] {
			add("%s: LIC_FILES_CHKSUM %s is %s, which LICENSE does not list", recipeFile, path, id)
		}
		if id := identifyLicence(b); id != "" && params["spdx"] != "" && id != params["spdx"] {
			add("%s: LIC_FILES_CHKSUM %s reads as %s, the recipe says %s", recipeFile, path, id, params["spdx"])
		}
	}
	if own, err := ownLicence(repo); err != nil || !licence[own] {
		add("%s: LICENSE %q lacks the project's own licence (%s, %v)", recipeFile, rec.value("LICENSE"), own, err)
	}

	// 5. Every file the recipe installs exists, and what the packaging
	// variables name is installed.
	install, ok := rec.function("do_install:append")
	if !ok {
		add("%s: no do_install:append", recipeFile)
	}
	installed := lintInstall(repo, install, rec, goImport, add)
	for _, f := range rec.value("CONFFILES:${PN}") {
		if !installed[f] {
			add("%s: CONFFILES %s is not installed by do_install", recipeFile, f)
		}
	}
	for _, f := range rec.value("FILES:${PN}") {
		if !installed[f] {
			add("%s: FILES:${PN} %s is not installed by do_install", recipeFile, f)
		}
	}
	for _, u := range rec.value("SYSTEMD_SERVICE:${PN}") {
		if !installed["${systemd_system_unitdir}/"+u] {
			add("%s: SYSTEMD_SERVICE %s is not installed to ${systemd_system_unitdir}", recipeFile, u)
		}
	}
	lintUser(repo, rec, add)

	// 6. The module list and licences match go.mod and go.sum, and SRCREV
	// names a commit with the same go.mod and go.sum.
	sums, err := readGoSum(filepath.Join(repo, "go.sum"))
	if err != nil {
		return nil, err
	}
	for _, uri := range rec.value("SRC_URI") {
		if !strings.HasPrefix(uri, "gomod://") {
			continue
		}
		path, params := splitURI(uri)
		m := modFile{Path: strings.TrimPrefix(path, "gomod://"), Version: params["version"], ModOnly: params["mod"] == "1"}
		if !sums[m.goSumKey()] {
			add("%s: %s@%s is not in go.sum", modsFile, m.Path, m.Version)
		}
		if params["sha256sum"] == "" {
			add("%s: %s@%s has no sha256sum", modsFile, m.Path, m.Version)
		}
	}
	res, err := resolve(repo, []string{mainPackage})
	if err != nil {
		return nil, err
	}
	own, _ := ownLicence(repo)
	for path, want := range map[string]string{modsFile: modsInc(res), licsFile: licensesInc(res, own)} {
		have, err := os.ReadFile(filepath.Join(repo, path))
		if err != nil || string(have) != want {
			add("%s: out of date with go.mod/go.sum: run make yocto-mods", path)
		}
	}
	rev := first(rec.value("SRCREV"))
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(rev) {
		add("%s: SRCREV %q is not a full commit hash", srcrevFile, rev)
	} else if ok, err := moduleFilesMatch(repo, rev); err != nil {
		add("%s: SRCREV %s: %v (a shallow clone lacks it: fetch the history)", srcrevFile, rev, err)
	} else if !ok {
		add("%s: SRCREV %s has another go.mod/go.sum than the working tree: commit, then run make yocto-mods", srcrevFile, rev)
	}
	return problems, nil
}

func requires(stmts []stmt, name string) bool {
	for _, s := range stmts {
		if s.Kind == "require" && strings.TrimSpace(s.Value) == name {
			return true
		}
	}
	return false
}

var (
	fromTree     = regexp.MustCompile(`\$\{S\}/src/\$\{GO_IMPORT\}/([^\s;"']+)`)
	fromUnpack   = regexp.MustCompile(`\$\{UNPACKDIR\}/([^\s;"']+)`)
	installedBin = regexp.MustCompile(`\$\{D\}(\$\{bindir\}/[A-Za-z0-9_.-]+)\s*$`)
)

// lintInstall checks the sources of do_install and returns the installed
// paths (as ${var}/... without ${D}).
func lintInstall(repo string, fn stmt, rec *parsed, goImport string, add func(string, ...any)) map[string]bool {
	installed := map[string]bool{}
	srcFiles := map[string]bool{}
	for _, uri := range rec.value("SRC_URI") {
		if p, ok := strings.CutPrefix(uri, "file://"); ok {
			srcFiles[strings.SplitN(p, ";", 2)[0]] = true
		}
	}
	for _, m := range fromTree.FindAllStringSubmatch(fn.Value, -1) {
		if _, err := os.Stat(filepath.Join(repo, m[1])); err != nil {
			add("%s: installs %s from the source tree, which does not exist", fn.pos(), m[1])
		}
	}
	for _, m := range fromUnpack.FindAllStringSubmatch(fn.Value, -1) {
		if !srcFiles[m[1]] {
			add("%s: installs ${UNPACKDIR}/%s, which SRC_URI does not fetch", fn.pos(), m[1])
		}
		if _, err := os.Stat(filepath.Join(repo, recipeDir, "files", m[1])); err != nil {
			add("%s: installs %s, which is not in %s/files", fn.pos(), m[1], recipeDir)
		}
	}
	for _, line := range strings.Split(strings.ReplaceAll(fn.Value, "\\\n", " "), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "install":
			var args []string
			dir := false
			for i := 1; i < len(f); i++ {
				switch {
				case f[i] == "-d":
					dir = true
				case f[i] == "-m" || f[i] == "-o" || f[i] == "-g":
					i++
				case strings.HasPrefix(f[i], "-"):
				default:
					args = append(args, f[i])
				}
			}
			if dir || len(args) < 2 {
				continue
			}
			dest := strings.TrimPrefix(args[len(args)-1], "${D}")
			for _, src := range args[:len(args)-1] {
				d := dest
				if strings.HasSuffix(d, "/") {
					d += filepath.Base(src)
				}
				installed[d] = true
			}
		case "mv", "cp", "ln":
			if m := installedBin.FindStringSubmatch(line); m != nil {
				installed[m[1]] = true
			}
		}
	}
	// The unit starts the binary the recipe installs.
	unit, err := os.ReadFile(filepath.Join(repo, "systemd/kvscamd.service"))
	if err == nil {
		m := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/(\S+)`).FindSubmatch(unit)
		switch {
		case m == nil:
			add("systemd/kvscamd.service: ExecStart does not start a program in /usr/bin (${bindir})")
		case !installed["${bindir}/"+string(m[1])]:
			add("%s: the unit's ExecStart binary is not installed as ${bindir}/%s", fn.pos(), m[1])
		}
	}
	return installed
}

// lintUser checks that USERADD_PARAM creates the user the sysusers file
// declares, so that the image's sysusers check and the unit agree.
func lintUser(repo string, rec *parsed, add func(string, ...any)) {
	b, err := os.ReadFile(filepath.Join(repo, "systemd/kvscamd.sysusers.conf"))
	if err != nil {
		add("systemd/kvscamd.sysusers.conf: %v", err)
		return
	}
	param := strings.Join(rec.value("USERADD_PARAM:${PN}"), " ")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "u":
			if !strings.HasSuffix(param, " "+f[1]) {
				add("%s: USERADD_PARAM does not create user %s of the sysusers file", recipeFile, f[1])
			}
			if home := f[len(f)-1]; strings.HasPrefix(home, "/") && !strings.Contains(param, "--home-dir "+home) {
				add("%s: USERADD_PARAM: the sysusers file gives %s the home %s", recipeFile, f[1], home)
			}
		case "m":
			if !regexp.MustCompile(`--groups \S*\b` + regexp.QuoteMeta(f[2]) + `\b`).MatchString(param) {
				add("%s: USERADD_PARAM does not add %s to group %s as the sysusers file does", recipeFile, f[1], f[2])
			}
		}
	}
}

// splitURI splits "scheme://path;k=v;k=v".
func splitURI(uri string) (string, map[string]string) {
	parts := strings.Split(uri, ";")
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		params[k] = v
	}
	return parts[0], params
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// goDirective returns the "go" line of go.mod.
func goDirective(repo string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("layertool: %w", err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("layertool: go.mod has no go line")
	}
	return string(m[1]), nil
}

// versionLess compares "major.minor" versions.
func versionLess(a, b string) bool {
	var a1, a2, b1, b2 int
	fmt.Sscanf(a, "%d.%d", &a1, &a2)
	fmt.Sscanf(b, "%d.%d", &b1, &b2)
	return a1 < b1 || a1 == b1 && a2 < b2
}
