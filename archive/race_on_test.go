//go:build race

package archive_test

// raceEnabled scales down tests whose subject is memory: the race
// detector multiplies every allocation's cost.
const raceEnabled = true
