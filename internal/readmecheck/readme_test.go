package readmecheck_test

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// block is one ```go block of the README.
type block struct {
	fence   int    // line of the opening fence, 1-based
	heading string // the section it is in ("Quick start")
	src     []byte
}

// dir is the block's package directory in the scratch module.
func (b block) dir() string { return fmt.Sprintf("readme_L%d", b.fence) }

const modulePath = "github.com/tieredcache/tieredcache"

// repoRoot is the module's root: two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(gomod, []byte("module "+modulePath+"\n")) {
		t.Fatalf("%s is not the root of %s (%v)", root, modulePath, err)
	}
	return root
}

// goBlocks returns README's ```go blocks, or an error naming the line of
// an unterminated one.
func goBlocks(readme []byte) ([]block, error) {
	var blocks []block
	var cur *block
	heading := ""
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.src = append(append(cur.src, line...), '\n')
		case strings.HasPrefix(line, "## "):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		case strings.HasPrefix(line, "```"):
			switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(line, "```"))) {
			case "go", "golang":
				cur = &block{fence: n, heading: heading}
			default:
				// Another language: skip to its closing fence.
				for sc.Scan() {
					n++
					if strings.TrimSpace(sc.Text()) == "```" {
						break
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("README.md:%d: ```go block never closed", cur.fence)
	}
	return blocks, nil
}

func readmeBlocks(t *testing.T, root string) []block {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := goBlocks(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go blocks: the checker's parser is broken, or the README lost its code")
	}
	return blocks
}

// goTool returns the go command, or skips the test without one (fails it
// under CI=true).
func goTool(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		const msg = "no go command on PATH to build the README's Go blocks with"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: a failure)")
		}
		t.Skip("README check skipped: " + msg)
	}
	return goBin
}

// TestREADMEGoBlocks builds and vets every ```go block of README.md. Each
// block must be a whole Go file (package clause, imports) formatted by
// gofmt; each becomes a package of a scratch module that requires this
// module through a replace directive, and uses the module's own go.sum, so
// that nothing is downloaded.
func TestREADMEGoBlocks(t *testing.T) {
	goBin := goTool(t)
	root := repoRoot(t)
	blocks := readmeBlocks(t, root)

	scratch := t.TempDir()
	writeScratchModule(t, root, scratch)
	fset := token.NewFileSet()
	var bad bool
	for _, b := range blocks {
		if _, err := parser.ParseFile(fset, "block.go", b.src, parser.PackageClauseOnly); err != nil {
			t.Errorf("README.md:%d: a ```go block must be a whole Go file, starting with its package clause: %v", b.fence, err)
			bad = true
			continue
		}
		if formatted, err := format.Source(b.src); err == nil && !bytes.Equal(formatted, b.src) {
			t.Errorf("README.md:%d: the ```go block is not gofmt'ed; it should read:\n%s", b.fence, formatted)
		}
		dir := filepath.Join(scratch, b.dir())
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), b.src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if bad {
		return
	}
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = scratch
		cmd.Env = append(os.Environ(),
			"GOWORK=off",
			"GOPROXY=off", // everything needed is in the module cache already
			"GOFLAGS="+goflags(),
		)
		out, err := cmd.CombinedOutput()
		if err != nil {
			reportFailure(t, "go "+strings.Join(args, " "), blocks, out, err)
		}
	}
}

// goflags is $GOFLAGS with -mod=readonly in place of any -mod setting.
func goflags() string {
	flags := []string{"-mod=readonly"}
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if !strings.HasPrefix(f, "-mod=") {
			flags = append(flags, f)
		}
	}
	return strings.Join(flags, " ")
}

// writeScratchModule writes a go.mod that requires this module (replaced
// by root) and everything it requires, and this module's go.sum.
func writeScratchModule(t *testing.T, root, scratch string) {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod := bytes.Replace(gomod, []byte("module "+modulePath+"\n"), []byte("module readmecheck.example\n"), 1)
	mod = fmt.Appendf(mod, "\nrequire %s v0.0.0-00010101000000-000000000000\n\nreplace %s => %s\n",
		modulePath, modulePath, strconv.Quote(root))
	if err := os.WriteFile(filepath.Join(scratch, "go.mod"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
}

var posInBlock = regexp.MustCompile(`(?:\./)?readme_L(\d+)/main\.go:(\d+)`)

// reportFailure reports the go command's output with positions in the
// scratch module turned into README lines, naming each failing block.
func reportFailure(t *testing.T, what string, blocks []block, out []byte, err error) {
	t.Helper()
	failing := map[int]bool{}
	mapped := posInBlock.ReplaceAllFunc(out, func(m []byte) []byte {
		sub := posInBlock.FindSubmatch(m)
		fence, _ := strconv.Atoi(string(sub[1]))
		line, _ := strconv.Atoi(string(sub[2]))
		failing[fence] = true
		return fmt.Appendf(nil, "README.md:%d", fence+line)
	})
	var named []string
	for _, b := range blocks {
		if failing[b.fence] {
			named = append(named, fmt.Sprintf("README.md:%d (%s)", b.fence, b.heading))
		}
	}
	if len(named) == 0 {
		named = []string{"(none named in the output)"}
	}
	t.Errorf("%s failed (%v) for the ```go block(s) at %s:\n%s", what, err, strings.Join(named, ", "), mapped)
}

// TestQuickStartIsExample checks that the README's quick start is the
// package example tiered.Example: main's body is Example's without its
// // Output: comment, and every other declaration is the example's own.
func TestQuickStartIsExample(t *testing.T) {
	root := repoRoot(t)
	var quick *block
	for _, b := range readmeBlocks(t, root) {
		if b.heading == "Quick start" {
			quick = &b
			break
		}
	}
	if quick == nil {
		t.Fatal(`README.md: no ` + "```go" + ` block under "## Quick start"`)
	}

	fset := token.NewFileSet()
	qf, err := parser.ParseFile(fset, "README.md", quick.src, parser.ParseComments)
	if err != nil {
		t.Fatalf("README.md:%d: the quick start does not parse: %v", quick.fence, err)
	}
	example := filepath.Join(root, "tiered", "example_test.go")
	exSrc, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := parser.ParseFile(fset, example, exSrc, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	exDecls := declsByName(ef)
	// Declarations the examples share with the package's other tests (the
	// User type) may be restated in the README: they need only exist.
	pkgNames := map[string]bool{}
	tests, err := filepath.Glob(filepath.Join(root, "tiered", "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range tests {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name.Name == "tiered_test" {
			for name := range declsByName(f) {
				pkgNames[name] = true
			}
		}
	}

	at := func(pos token.Pos) int { return quick.fence + fset.Position(pos).Line }
	for name, d := range declsByName(qf) {
		if name == "main" {
			ex, ok := exDecls["Example"].(*ast.FuncDecl)
			if !ok {
				t.Fatalf("%s: no func Example to compare the quick start with", example)
			}
			body := d.(*ast.FuncDecl).Body
			got := bodyText(quick.src, fset, body)
			want := withoutOutput(bodyText(exSrc, fset, ex.Body))
			if n, g, w, differ := firstDiff(got, want); differ {
				t.Errorf("README.md:%d: the quick start's main differs from tiered.Example (%s:%d), which it must repeat:\n README: %q\nExample: %q",
					at(body.Lbrace)+n, example, fset.Position(ex.Body.Lbrace).Line+n, g, w)
			}
			continue
		}
		if ex, ok := exDecls[name]; ok {
			if got, want := declText(quick.src, fset, d), declText(exSrc, fset, ex); got != want {
				t.Errorf("README.md:%d: %s differs from its copy in %s:\nREADME:\n%s\nexample_test.go:\n%s", at(d.Pos()), name, example, got, want)
			}
			continue
		}
		if !pkgNames[name] {
			t.Errorf("README.md:%d: the quick start declares %s, which tiered.Example's package does not", at(d.Pos()), name)
		}
	}
}

// declsByName maps each top-level declaration's name to it: funcs (methods
// as Type.Method) and the single spec of a type, var or const declaration.
func declsByName(f *ast.File) map[string]ast.Decl {
	m := map[string]ast.Decl{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				name = recvType(d.Recv.List[0].Type) + "." + name
			}
			m[name] = d
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					m[s.Name.Name] = d
				case *ast.ValueSpec:
					for _, n := range s.Names {
						m[n.Name] = d
					}
				}
			}
		}
	}
	return m
}

func recvType(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return recvType(e.X)
	case *ast.Ident:
		return e.Name
	case *ast.IndexExpr:
		return recvType(e.X)
	}
	return "?"
}

// declText is a declaration's source without its doc comment.
func declText(src []byte, fset *token.FileSet, d ast.Decl) string {
	return string(src[fset.Position(d.Pos()).Offset:fset.Position(d.End()).Offset])
}

// bodyText is the source between a body's braces, trailing blanks trimmed.
func bodyText(src []byte, fset *token.FileSet, body *ast.BlockStmt) string {
	text := string(src[fset.Position(body.Lbrace).Offset+1 : fset.Position(body.Rbrace).Offset])
	return strings.TrimRight(text, " \t\n") + "\n"
}

// firstDiff returns the first line (0-based) where a and b differ, and
// the two lines there ("" past the end of either).
func firstDiff(a, b string) (n int, la, lb string, differ bool) {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	for n = 0; n < max(len(as), len(bs)); n++ {
		la, lb = "", ""
		if n < len(as) {
			la = as[n]
		}
		if n < len(bs) {
			lb = bs[n]
		}
		if la != lb || n >= len(as) || n >= len(bs) {
			return n, la, lb, true
		}
	}
	return 0, "", "", false
}

// withoutOutput cuts an example body's // Output: comment and what follows.
func withoutOutput(body string) string {
	lines := strings.SplitAfter(body, "\n")
	for i, l := range lines {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "// Output:") || strings.HasPrefix(t, "// Unordered output:") {
			return strings.TrimRight(strings.Join(lines[:i], ""), " \t\n") + "\n"
		}
	}
	return body
}
