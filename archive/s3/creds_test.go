package s3

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// TestCredentials: without keys in the Config, the backend signs with the
// AWS environment variables, else with ~/.aws/credentials (AWS_PROFILE's
// or the default profile); with neither it is refused.
func TestCredentials(t *testing.T) {
	good := "[default]\naws_access_key_id = " + s3test.User + "\naws_secret_access_key = " + s3test.Password + "\n"
	wrong := "[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong-secret\n"
	tests := []struct {
		name    string
		env     map[string]string
		file    string
		wantErr bool
	}{
		{name: "env", env: map[string]string{"AWS_ACCESS_KEY_ID": s3test.User, "AWS_SECRET_ACCESS_KEY": s3test.Password}},
		{name: "env over file", env: map[string]string{"AWS_ACCESS_KEY_ID": s3test.User, "AWS_SECRET_ACCESS_KEY": s3test.Password}, file: wrong},
		{name: "file", file: good},
		{name: "file profile", env: map[string]string{"AWS_PROFILE": "backup"}, file: wrong + "[backup]\naws_access_key_id = " + s3test.User + "\naws_secret_access_key = " + s3test.Password + "\n"},
		{name: "wrong file", file: wrong, wantErr: true},
		{name: "none", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newBucket(t, "")
			cfg.AccessKey, cfg.SecretKey = "", ""
			home := t.TempDir()
			t.Setenv("HOME", home)
			for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
				"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} {
				t.Setenv(v, "")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if tt.file != "" {
				if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(home, ".aws", "credentials"), []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			b, err := New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = b.Create(t.Context())
			if err == nil {
				err = b.Put(t.Context(), archive.IndexFile, "i", []byte("x"))
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
