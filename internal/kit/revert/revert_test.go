package revert

import (
	"reflect"
	"testing"
)

func TestReverter(t *testing.T) {
	for _, c := range []struct {
		name    string
		succeed bool
		want    []int
	}{
		{"failure undoes newest first", false, []int{3, 2, 1}},
		{"success keeps everything", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []int
			func() {
				r := New()
				defer r.Fail()
				for i := 1; i <= 3; i++ {
					r.Add(func() { got = append(got, i) })
				}
				if c.succeed {
					r.Success()
				}
			}()
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("undos ran %v, want %v", got, c.want)
			}
		})
	}
}

func TestFailRunsOnce(t *testing.T) {
	n := 0
	r := New()
	r.Add(func() { n++ })
	r.Fail()
	r.Fail()
	if n != 1 {
		t.Fatalf("undo ran %d times, want 1", n)
	}
}
