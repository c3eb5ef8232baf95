package maildir

import (
	"testing"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		in   string
		want Name
	}{
		{"1700000000.M1P2Q3.host,S=1234,W=1260:2,FS", Name{Unique: "1700000000.M1P2Q3.host,S=1234,W=1260", Flags: "FS", Size: 1234, HasInfo: true}},
		{"1700000000.M1P2Q3.host", Name{Unique: "1700000000.M1P2Q3.host", Size: -1}},
		{"1700000000.M1P2Q3.host:2,", Name{Unique: "1700000000.M1P2Q3.host", Size: -1, HasInfo: true}},
		{"1700000000.M1P2Q3.host!2,SF", Name{Unique: "1700000000.M1P2Q3.host", Flags: "FS", Size: -1, HasInfo: true}},
		{"1700000000.M1P2Q3.host;2,SSa", Name{Unique: "1700000000.M1P2Q3.host", Flags: "Sa", Size: -1, HasInfo: true}},
		// Experimental "1," info is not flags.
		{"1700000000.host:1,xyz", Name{Unique: "1700000000.host:1,xyz", Size: -1}},
		// A separator inside the flags does not hide the info part.
		{"1700000000.host:2,S!x", Name{Unique: "1700000000.host", Flags: "!Sx", Size: -1, HasInfo: true}},
		{"u:2,:", Name{Unique: "u", Flags: ":", Size: -1, HasInfo: true}},
		// The last info part wins, as FileName appends it.
		{"a:2,b:2,S", Name{Unique: "a:2,b", Flags: "S", Size: -1, HasInfo: true}},
		{"1.host,S=12x:2,S", Name{Unique: "1.host,S=12x", Flags: "S", Size: -1, HasInfo: true}},
		{"1.host,S=-5", Name{Unique: "1.host,S=-5", Size: -1}},
		{"1.host,S=99999999999999999999", Name{Unique: "1.host,S=99999999999999999999", Size: -1}},
		{"", Name{Size: -1}},
		{":2,", Name{Size: -1, HasInfo: true}},
	}
	for _, tt := range tests {
		if got := ParseName(tt.in); got != tt.want {
			t.Errorf("ParseName(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestFileName(t *testing.T) {
	tests := []struct {
		unique, flags, want string
	}{
		{"1.host", "SF", "1.host:2,FS"},
		{"1.host", "", "1.host:2,"},
		{"1.host", "S S\x00\xff", "1.host:2,S"},
	}
	for _, tt := range tests {
		if got := FileName(tt.unique, tt.flags); got != tt.want {
			t.Errorf("FileName(%q, %q) = %q, want %q", tt.unique, tt.flags, got, tt.want)
		}
	}
}

func TestNormalizeFlags(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"SRF", "FRS"},
		{"SSSa", "Sa"},
		{"T\tS\nR", "RST"},
		{"é", ""},
	}
	for _, tt := range tests {
		if got := NormalizeFlags(tt.in); got != tt.want {
			t.Errorf("NormalizeFlags(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParseName checks that ParseName never panics, that its result is
// canonical, and that FileName and ParseName round-trip.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"1700000000.M1P2Q3.host,S=1234,W=1260:2,FS",
		"1700000000.M1P2Q3.host",
		"x!2,S",
		"a:2,b:2,S",
		"u:2,:",
		",S=1,S=2",
		"",
	} {
		f.Add(s, "FS")
	}
	f.Fuzz(func(t *testing.T, name, flags string) {
		n := ParseName(name)
		if n.Size < -1 {
			t.Errorf("ParseName(%q).Size = %d", name, n.Size)
		}
		if NormalizeFlags(n.Flags) != n.Flags {
			t.Errorf("ParseName(%q).Flags = %q, not normalized", name, n.Flags)
		}
		if !n.HasInfo && (n.Unique != name || n.Flags != "") {
			t.Errorf("ParseName(%q) = %+v without info", name, n)
		}
		if n.HasInfo {
			if again := ParseName(FileName(n.Unique, n.Flags)); again != n {
				t.Errorf("ParseName(FileName(ParseName(%q))) = %+v, want %+v", name, again, n)
			}
		}

		fn := FileName(name, flags)
		rt := ParseName(fn)
		if rt.Unique != name || rt.Flags != NormalizeFlags(flags) || !rt.HasInfo {
			t.Errorf("ParseName(FileName(%q, %q)) = %+v", name, flags, rt)
		}
		if nf := NormalizeFlags(flags); NormalizeFlags(nf) != nf {
			t.Errorf("NormalizeFlags(%q) = %q is not idempotent", flags, nf)
		}
	})
}
