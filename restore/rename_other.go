//go:build unix && !linux

package restore

import "os"

// renameNoReplace renames oldpath to newpath unless newpath exists.
func renameNoReplace(oldpath, newpath string) error { return linkRename(oldpath, newpath) }

// syncFS returns nil: there is no syncfs, and each file is fsynced.
func syncFS(*os.File) func() error { return nil }
