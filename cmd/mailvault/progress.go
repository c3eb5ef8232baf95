package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progressBar draws a one-line bar with a rate and an ETA on a terminal.
type progressBar struct {
	w     io.Writer
	start time.Time
	last  int
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w, start: time.Now()} }

// update redraws the bar; items are messages or files.
func (p *progressBar) update(label string, itemsDone, itemsTotal, bytesDone, bytesTotal int64) {
	elapsed := time.Since(p.start).Seconds()
	frac := 0.0
	if bytesTotal > 0 {
		frac = min(float64(bytesDone)/float64(bytesTotal), 1)
	}
	const width = 24
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(bytesDone) / elapsed
	}
	eta := "--:--"
	if rate > 0 && bytesTotal > bytesDone {
		s := int(float64(bytesTotal-bytesDone) / rate)
		eta = fmt.Sprintf("%02d:%02d", s/60, s%60)
	}
	line := fmt.Sprintf("\r%s [%s] %3.0f%% %d/%d %s/%s %s/s ETA %s", label, bar, frac*100,
		itemsDone, itemsTotal, humanBytes(bytesDone), humanBytes(bytesTotal), humanBytes(int64(rate)), eta)
	pad := p.last - len(line)
	p.last = len(line)
	if pad > 0 {
		line += strings.Repeat(" ", pad)
	}
	fmt.Fprint(p.w, line)
}

func (p *progressBar) done() { fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.last)+"\r") }

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
