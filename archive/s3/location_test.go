package s3

import (
	"testing"

	"github.com/mailvault/mailvault/archive"
)

var (
	_ archive.Backend    = (*Backend)(nil)
	_ archive.FilePutter = (*Backend)(nil)
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		loc     string
		want    Config
		wantErr bool
	}{
		{loc: "s3:http://127.0.0.1:9000/bucket/prefix", want: Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket", Prefix: "prefix"}},
		{loc: "s3:https://s3.example.com/bucket", want: Config{Endpoint: "s3.example.com", Secure: true, Bucket: "bucket"}},
		{loc: "s3:https://s3.example.com/bucket/", want: Config{Endpoint: "s3.example.com", Secure: true, Bucket: "bucket"}},
		{loc: "s3:s3.amazonaws.com/bucket/a/b/", want: Config{Endpoint: "s3.amazonaws.com", Secure: true, Bucket: "bucket", Prefix: "a/b"}},
		{loc: "s3:http://h:1/b//x//y", want: Config{Endpoint: "h:1", Bucket: "b", Prefix: "x/y"}},
		{loc: "s3:http://h:1/b/../x", wantErr: true},
		{loc: "s3:http://h:1/b/x/../../y", wantErr: true},
		{loc: "s3:http://h:1", wantErr: true},
		{loc: "s3:http://h:1/", wantErr: true},
		{loc: "s3:", wantErr: true},
		{loc: "s3:ftp://h/b", wantErr: true},
		{loc: "/local/dir", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseLocation(tt.loc)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseLocation(%q) error = %v, want error %v", tt.loc, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("ParseLocation(%q) = %+v, want %+v", tt.loc, got, tt.want)
		}
	}
}

func TestLocationRoundTrip(t *testing.T) {
	for _, loc := range []string{"s3:http://127.0.0.1:9000/b/p/q", "s3:https://s3.example.com/b"} {
		cfg, err := ParseLocation(loc)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Location(); got != loc {
			t.Errorf("Location() = %q, want %q", got, loc)
		}
	}
}
