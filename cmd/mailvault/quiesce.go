package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailvault/mailvault/mailserver/control"
	"github.com/mailvault/mailvault/snapshot"
)

// runningServers connects to the control socket of each running
// `mailvault serve` whose writers a view of paths must pause: the one on
// dataDir if given, else those whose data directory holds one of the
// paths (control.Find). A data directory without a running server is
// skipped — nothing writes there through us — and said at debug level.
// The caller closes the group; an empty group pauses nothing.
func runningServers(ctx context.Context, g *globals, dataDir string, paths []string) (control.Group, error) {
	log := g.logger()
	dirs := []string{dataDir}
	if dataDir == "" {
		var err error
		if dirs, err = control.Find(paths); err != nil {
			return nil, err
		}
		if len(dirs) == 0 {
			log.Debug("no control socket in or above the paths: no running mailvault serve to pause", "paths", paths)
		}
	}
	var servers control.Group
	for _, d := range dirs {
		c, err := control.Dial(ctx, d)
		if errors.Is(err, control.ErrNotRunning) {
			log.Debug("no mailvault serve is running on the data directory: not pausing it", "data", d)
			continue
		}
		if err != nil {
			servers.Close()
			return nil, fmt.Errorf("pausing the mail server: %w", err)
		}
		log.Debug("the running mailvault serve will be paused for the instant of the view", "data", c.DataDir())
		servers = append(servers, c)
	}
	return servers, nil
}

// consistencyWith returns c with servers as its Quiescer when there are
// any (a nil Group in the interface would still be called).
func consistencyWith(c snapshot.Consistency, servers control.Group) snapshot.Consistency {
	if len(servers) > 0 {
		c.Quiescer = servers
	}
	return c
}

// pausedDirs names the data directories of servers, for logs and --json.
func pausedDirs(servers control.Group) []string {
	dirs := []string{}
	for _, c := range servers {
		dirs = append(dirs, c.DataDir())
	}
	return dirs
}
