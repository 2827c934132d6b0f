// Command testsum reads `go test -json` on stdin and prints what a CI log
// needs: every failed test's whole output first, then each top-level
// test's result and time, slowest first, and the total. Its exit status
// is 1 when a test or a package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type result struct {
	name    string
	action  string
	elapsed float64
}

func main() {
	out := map[string]*strings.Builder{}
	var results []result
	var pkgs []result
	failed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // not JSON: a build error, say
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if out[key] == nil {
				out[key] = &strings.Builder{}
			}
			out[key].WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Action == "fail" {
				failed = true
			}
			switch {
			case e.Test == "":
				pkgs = append(pkgs, result{e.Package, e.Action, e.Elapsed})
			case !strings.Contains(e.Test, "/"):
				results = append(results, result{e.Test, e.Action, e.Elapsed})
			}
		}
	}
	for _, r := range results {
		if r.action == "fail" {
			fmt.Printf("=== output of failed %s\n", r.name)
			for key, b := range out {
				if strings.HasSuffix(key, " "+r.name) || strings.Contains(key, " "+r.name+"/") {
					fmt.Print(b.String())
				}
			}
		}
	}
	for _, p := range pkgs {
		if p.action == "fail" {
			fmt.Printf("=== output of failed package %s\n%s", p.name, out[p.name+" "])
		}
	}
	sort.Slice(results, func(i, j int) bool { return results[i].elapsed > results[j].elapsed })
	for _, r := range results {
		fmt.Printf("%-5s %7.1fs  %s\n", strings.ToUpper(r.action), r.elapsed, r.name)
	}
	for _, p := range pkgs {
		fmt.Printf("%-5s %7.1fs  package %s\n", strings.ToUpper(p.action), p.elapsed, p.name)
	}
	if failed {
		os.Exit(1)
	}
}
