package s3

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// testServer is the MinIO server the package's tests share, started by
// TestMain when a binary is found.
var testServer *s3test.Server

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if bin := s3test.Binary(); bin != "" {
			srv, err := s3test.Start(context.Background(), bin)
			if err != nil {
				fmt.Fprintln(os.Stderr, "minio:", err)
				return 1
			}
			defer srv.Stop()
			testServer = srv
		}
		return m.Run()
	}())
}

// newBucket returns a Config for a fresh, not yet created bucket on the
// test server.
func newBucket(t testing.TB, prefix string) Config {
	t.Helper()
	if testServer == nil {
		s3test.SkipOrFail(t)
	}
	return Config{
		Endpoint:  testServer.Addr,
		Bucket:    s3test.NewBucketName(),
		Prefix:    prefix,
		AccessKey: s3test.User,
		SecretKey: s3test.Password,
	}
}

// newBackend creates a bucket and returns a backend on it.
func newBackend(t testing.TB, prefix string) *Backend {
	t.Helper()
	b, err := New(t.Context(), newBucket(t, prefix))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b
}
