// Command layertool keeps the meta-kvscamd BitBake layer in step with the
// Go module and checks it offline, since no BitBake runs here.
//
//	layertool mods [-srcrev keep|HEAD]   rewrite the generated .inc files
//	layertool lint -bbparse PATH         check the layer (make lint)
//
// Both run from the repository root and need a module cache that holds
// every module ("go mod download"); neither uses the network.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Layout of the layer inside the repository.
const (
	layerDir   = "yocto/meta-kvscamd"
	recipeDir  = layerDir + "/recipes-multimedia/kvscamd"
	recipeFile = recipeDir + "/kvscamd_git.bb"
	modsFile   = recipeDir + "/kvscamd-go-mods.inc"
	licsFile   = recipeDir + "/kvscamd-licenses.inc"
	srcrevFile = recipeDir + "/kvscamd-srcrev.inc"
	// mainPackage is what the recipe's GO_INSTALL builds.
	mainPackage = "./daemon"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: layertool mods|lint [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "mods":
		fs := flag.NewFlagSet("mods", flag.ExitOnError)
		srcrev := fs.String("srcrev", "keep", `"keep" keeps SRCREV while its go.mod and go.sum equal the working tree's (else HEAD is taken); "HEAD" or a commit sets it`)
		fs.Parse(os.Args[2:])
		err = writeMods(".", *srcrev)
	case "lint":
		fs := flag.NewFlagSet("lint", flag.ExitOnError)
		bbparse := fs.String("bbparse", "build/bbparse", "the tree-sitter-bitbake parser built from yocto/bbparse")
		fs.Parse(os.Args[2:])
		var problems []string
		problems, err = lint(".", *bbparse)
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		if err == nil && len(problems) > 0 {
			err = fmt.Errorf("layertool: %d problem(s) in %s", len(problems), layerDir)
		}
		if err == nil {
			fmt.Println("layertool: meta-kvscamd ok")
		}
	default:
		err = fmt.Errorf("layertool: unknown command %q: want mods or lint", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// writeMods regenerates the module list, the licence list and SRCREV.
func writeMods(repo, srcrev string) error {
	res, err := resolve(repo, []string{mainPackage})
	if err != nil {
		return err
	}
	own, err := ownLicence(repo)
	if err != nil {
		return err
	}
	rev, err := chooseSrcrev(repo, srcrev)
	if err != nil {
		return err
	}
	for path, text := range map[string]string{
		modsFile:   modsInc(res),
		licsFile:   licensesInc(res, own),
		srcrevFile: srcrevInc(rev),
	} {
		if err := os.WriteFile(filepath.Join(repo, path), []byte(text), 0o644); err != nil {
			return fmt.Errorf("layertool: write %s: %w", path, err)
		}
	}
	fmt.Printf("layertool: %d module files, %d licence files, SRCREV %s\n", len(res.Mods), len(res.Lics), rev)
	return nil
}

// ownLicence identifies the project's LICENSE file.
func ownLicence(repo string) (string, error) {
	text, err := os.ReadFile(filepath.Join(repo, "LICENSE"))
	if err != nil {
		return "", fmt.Errorf("layertool: %w", err)
	}
	id := identifyLicence(text)
	if id == "" {
		return "", errors.New("layertool: LICENSE: licence text not recognised")
	}
	return id, nil
}

func git(repo string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// moduleFilesMatch reports whether go.mod and go.sum at rev equal the
// working tree's.
func moduleFilesMatch(repo, rev string) (bool, error) {
	for _, f := range []string{"go.mod", "go.sum"} {
		at, err := git(repo, "show", rev+":"+f)
		if err != nil {
			return false, err
		}
		now, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			return false, err
		}
		if !bytes.Equal(at, now) {
			return false, nil
		}
	}
	return true, nil
}

func chooseSrcrev(repo, want string) (string, error) {
	if want == "keep" {
		if old, err := currentSrcrev(repo); err == nil {
			if ok, err := moduleFilesMatch(repo, old); err == nil && ok {
				return old, nil
			}
		}
		want = "HEAD"
	}
	out, err := git(repo, "rev-parse", "--verify", want+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("layertool: SRCREV %s: %w", want, err)
	}
	rev := strings.TrimSpace(string(out))
	ok, err := moduleFilesMatch(repo, rev)
	if err != nil {
		return "", fmt.Errorf("layertool: SRCREV %s: %w", rev, err)
	}
	if !ok {
		return "", fmt.Errorf("layertool: go.mod or go.sum differ from commit %s: commit them first, then run make yocto-mods again, so that SRCREV names a commit with these modules", rev)
	}
	return rev, nil
}

// currentSrcrev reads SRCREV from the generated file.
func currentSrcrev(repo string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, srcrevFile))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SRCREV = "); ok {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", errors.New("no SRCREV line")
}
