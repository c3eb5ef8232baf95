package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection reset", fmt.Errorf("put: %w", syscall.ECONNRESET), true},
		{"connection refused", syscall.ECONNREFUSED, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"500", minio.ErrorResponse{StatusCode: http.StatusInternalServerError}, true},
		{"503 SlowDown", minio.ErrorResponse{Code: "SlowDown", StatusCode: http.StatusServiceUnavailable}, true},
		{"429", minio.ErrorResponse{StatusCode: http.StatusTooManyRequests}, true},
		{"NoSuchKey", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: http.StatusNotFound}, false},
		{"AccessDenied", minio.ErrorResponse{Code: "AccessDenied", StatusCode: http.StatusForbidden}, false},
		{"other", errors.New("invalid file name"), false},
	}
	for _, tt := range tests {
		if got := transient(context.Background(), tt.err); got != tt.want {
			t.Errorf("transient(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if transient(ctx, syscall.ECONNRESET) {
		t.Error("transient after the context ended")
	}
}

func TestRetry(t *testing.T) {
	reset := fmt.Errorf("read: %w", syscall.ECONNRESET)
	denied := minio.ErrorResponse{Code: "AccessDenied", StatusCode: http.StatusForbidden}
	tests := []struct {
		name      string
		errs      []error // returned by successive calls; then nil
		wantCalls int
		wantErr   error
	}{
		{"success", nil, 1, nil},
		{"one reset", []error{reset}, 2, nil},
		{"two resets", []error{reset, reset}, 3, nil},
		{"resets to the end", []error{reset, reset, reset, reset}, 3, syscall.ECONNRESET},
		{"permanent", []error{denied, nil}, 1, denied},
	}
	for _, tt := range tests {
		b := &Backend{attempts: 3, backoff: time.Microsecond}
		calls := 0
		err := b.retry(context.Background(), func() error {
			calls++
			if calls <= len(tt.errs) {
				return tt.errs[calls-1]
			}
			return nil
		})
		if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
			t.Errorf("%s: %d calls, %v; want %d calls, %v", tt.name, calls, err, tt.wantCalls, tt.wantErr)
		}
	}
}
