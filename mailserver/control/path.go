package control

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// SocketName is the control socket's file name inside the data directory.
const SocketName = "control.sock"

// SocketPath is the control socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// maxSunPath is the size of sun_path in struct sockaddr_un on Linux
// (unix(7)), terminating NUL included.
const maxSunPath = 108

// sockName returns a name for the socket at path that fits in sun_path.
// A longer path is reached through /proc/self/fd/N/<base>, N being an
// open descriptor of its directory (the way systemd reaches sockets
// with long paths); release closes that descriptor once bind or connect
// is done with the name.
func sockName(path string) (name string, release func(), err error) {
	if len(path) < maxSunPath {
		return path, func() {}, nil
	}
	fd, err := syscall.Open(filepath.Dir(path), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("control: %s: %w", filepath.Dir(path), err)
	}
	name = fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(name) >= maxSunPath {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("control: socket name %q too long", filepath.Base(path))
	}
	return name, func() { syscall.Close(fd) }, nil
}

// isSocket says whether path is a unix socket (not following a symlink).
func isSocket(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}

// Find returns the data directories of the servers whose control socket
// lies in or above one of paths (each directory once, in the order of the
// paths): backing up <data>/mail, <data>/mail/<domain> or <data> itself
// finds <data>. It only looks for the socket file; Dial says whether a
// server answers on it.
func Find(paths []string) ([]string, error) {
	var dirs []string
	seen := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		for dir := abs; ; dir = filepath.Dir(dir) {
			if isSocket(SocketPath(dir)) {
				if !seen[dir] {
					seen[dir] = true
					dirs = append(dirs, dir)
				}
				break
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return dirs, nil
}
