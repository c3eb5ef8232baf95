// Command floor accounts for the stored bytes of a mailvault repository by
// class and measures what stronger compression would make of each class
// (issue 11: the large-mail repository's size against restic's; see
// docs/PERFORMANCE.md "floor").
//
//	floor -repo R -identity id.txt [-dump DIR] [-levels [-classes text,tree]
//	      [-dict-sample 10 -dict-size 112640 | -dict FILE]]
//
// It reads every pack with the identity, splits the stored bytes into
// classes —
//
//	photo   data blobs in the base64 form stored raw (Compression base64)
//	form-*  data blobs in the base64 form as a zstd frame (base64+zstd):
//	        form-pdf the PDFs, form-text the others (CSV, logs)
//	text    the other data blobs (message headers and bodies, zstd)
//	tree    tree blobs: folder trees and their pages, the files tree
//	msgidx  tree blobs of the Message-ID index (roots, runs, pages)
//
// plus pack headers (the plaintext past the blobs), age's overhead on
// packs, index files, snapshots, keys and config — and, with -levels,
// compresses each class's payload (the bytes mailvault's zstd sees: the
// form for photo and form blobs, the plaintext for the others) blob by
// blob with klauspost zstd at each level and, for text and trees, with a
// dictionary (built by klauspost's dict package from every -dict-sample'th
// text blob, or read from -dict, e.g. one from `zstd --train`), timing each
// on one locked thread. It holds every payload in memory (1.3 GB for the
// 2.5 GB corpus).
// -dump writes the payloads as one file a blob under DIR/<class>/ for the
// command-line compressors (bench/floor/cli.sh).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

var classes = []string{"photo", "form-pdf", "form-text", "text", "tree", "msgidx"}

type blob struct {
	class   string
	stored  int // bytes in the pack
	payload []byte
}

func main() {
	repo := flag.String("repo", "", "repository directory")
	identity := flag.String("identity", "", "age identity file")
	dump := flag.String("dump", "", "write each class's payloads, one file a blob, under this directory")
	levels := flag.Bool("levels", false, "compress each class at klauspost zstd's levels and with a dictionary")
	dictSample := flag.Int("dict-sample", 10, "train the text dictionary on every n'th text blob")
	dictSize := flag.Int("dict-size", 112640, "dictionary size (zstd --train's default)")
	only := flag.String("classes", "", "only these classes, in the account, -dump and -levels (comma-separated)")
	dictFile := flag.String("dict", "", "use this zstd dictionary (e.g. from zstd --train) instead of building one")
	flag.Parse()
	if *repo == "" || *identity == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *only != "" {
		classes = strings.Split(*only, ",")
	}
	if err := run(*repo, *identity, *dump, *levels, *dictSample, *dictSize, *dictFile); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(repoDir, identity, dump string, levels bool, dictSample, dictSize int, dictFile string) error {
	ctx := context.Background()
	f, err := os.Open(identity)
	if err != nil {
		return err
	}
	ids, err := age.ParseIdentities(f)
	f.Close()
	if err != nil {
		return err
	}
	r, err := archive.Open(ctx, local.New(repoDir), archive.Credentials{Identities: ids}, archive.Options{})
	if err != nil {
		return err
	}
	defer r.Close()
	files, err := fileSizes(repoDir)
	if err != nil {
		return err
	}
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}

	var blobs []blob
	other := map[string]int{} // non-blob bytes by part
	// Every pack in data/, whatever the index says.
	packs, err := r.List(ctx, archive.PackFile)
	if err != nil {
		return err
	}
	for _, pack := range packs {
		plain, err := r.ReadPack(ctx, pack)
		if err != nil {
			return err
		}
		entries, err := archive.ParsePack(plain)
		if err != nil {
			return fmt.Errorf("pack %s: %w", pack, err)
		}
		sum := 0
		for _, e := range entries {
			stored := plain[e.Offset : e.Offset+e.Length]
			sum += int(e.Length)
			b, err := classify(zdec, e, stored)
			if err != nil {
				return fmt.Errorf("pack %s blob %s: %w", pack, e.ID, err)
			}
			blobs = append(blobs, b)
		}
		other["pack headers"] += len(plain) - sum
		other["age on packs"] += files[filepath.Join("data", pack.String()[:2], pack.String())] - len(plain)
	}
	for name, size := range files {
		part := filepath.Dir(name)
		if d := filepath.Dir(part); d != "." {
			part = d
		}
		switch part {
		case "data":
		case "index":
			other["index files"] += size
		case "snapshots":
			other["snapshots"] += size
		default:
			other["keys, config"] += size
		}
	}

	byClass := map[string][]blob{}
	for _, b := range blobs {
		byClass[b.class] = append(byClass[b.class], b)
	}
	total := 0
	for _, s := range files {
		total += s
	}
	fmt.Printf("repository %s: %d bytes in %d files, %d blobs\n\n", repoDir, total, len(files), len(blobs))
	fmt.Println("| class | blobs | payload MB | stored MB | stored / payload |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range classes {
		p, s := 0, 0
		for _, b := range byClass[c] {
			p += len(b.payload)
			s += b.stored
		}
		fmt.Printf("| %s | %d | %.2f | %.2f | %.3f |\n", c, len(byClass[c]), mb(p), mb(s), float64(s)/float64(max(p, 1)))
	}
	parts := make([]string, 0, len(other))
	for k := range other {
		parts = append(parts, k)
	}
	sort.Strings(parts)
	for _, k := range parts {
		fmt.Printf("| %s | | | %.2f | |\n", k, mb(other[k]))
	}
	fmt.Printf("| **repository** | | | **%.2f** | |\n", mb(total))
	sizeBuckets(byClass["text"])

	if dump != "" {
		for _, c := range classes {
			dir := filepath.Join(dump, c)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for i, b := range byClass[c] {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d", i)), b.payload, 0o644); err != nil {
					return err
				}
			}
		}
	}
	if levels {
		return measure(byClass, dictSample, dictSize, dictFile)
	}
	return nil
}

// classify returns a blob's class and payload: what mailvault hands zstd.
func classify(zdec *zstd.Decoder, e archive.PackedBlob, stored []byte) (blob, error) {
	b := blob{stored: len(stored), payload: stored}
	var err error
	if e.Compression&archive.Zstd != 0 {
		if b.payload, err = zdec.DecodeAll(stored, nil); err != nil {
			return b, err
		}
	} else {
		b.payload = bytes.Clone(stored) // the pack's buffer is not kept
	}
	switch {
	case e.Type == archive.DataBlob && e.Compression == archive.Base64:
		b.class = "photo"
	case e.Type == archive.DataBlob && e.Compression == archive.Base64Zstd:
		// A PDF's random streams are as incompressible as a photo; its
		// text, and CSV and logs, are not. The form's header is 3 bytes
		// for the corpus's line layouts (docs/FORMAT.md "Packs").
		b.class = "form-text"
		if bytes.Contains(b.payload[:min(len(b.payload), 16)], []byte("%PDF-")) {
			b.class = "form-pdf"
		}
	case e.Type == archive.DataBlob:
		b.class = "text"
	case isMsgIndex(b.payload):
		b.class = "msgidx"
	default:
		b.class = "tree"
	}
	return b, nil
}

// isMsgIndex tells the Message-ID index's blobs from the trees' by their
// plaintext (docs/FORMAT.md "The Message-ID index"): a binary page starts
// with its form byte 2, roots and runs are JSON objects whose first key is
// "index" or "run", and a page of form 1 one whose "entries" follow "page".
func isMsgIndex(p []byte) bool {
	if len(p) > 0 && p[0] == 2 {
		return true
	}
	var probe struct {
		Index   *int            `json:"index"`
		Run     *int            `json:"run"`
		Page    *int            `json:"page"`
		Entries json.RawMessage `json:"entries"`
	}
	if len(p) == 0 || p[0] != '{' || json.Unmarshal(p, &probe) != nil {
		return false
	}
	return probe.Index != nil || probe.Run != nil || (probe.Page != nil && probe.Entries != nil)
}

// sizeBuckets prints the text blobs by payload size: the small ones are
// where a zstd frame's fixed cost and the lack of history weigh most.
func sizeBuckets(text []blob) {
	limits := []int{128, 512, 2048, 8192, 1 << 30}
	type acc struct{ n, payload, stored int }
	sums := make([]acc, len(limits))
	for _, b := range text {
		i := sort.SearchInts(limits, len(b.payload)+1)
		sums[i].n++
		sums[i].payload += len(b.payload)
		sums[i].stored += b.stored
	}
	fmt.Println("\n| text blobs of payload | blobs | payload MB | stored MB | stored / payload |")
	fmt.Println("|---|---|---|---|---|")
	lo := 0
	for i, s := range sums {
		name := fmt.Sprintf("%d–%d B", lo, limits[i])
		if i == len(limits)-1 {
			name = fmt.Sprintf("> %d B", lo-1)
		}
		fmt.Printf("| %s | %d | %.2f | %.2f | %.3f |\n", name, s.n, mb(s.payload), mb(s.stored), float64(s.stored)/float64(max(s.payload, 1)))
		lo = limits[i] + 1
	}
}

func fileSizes(root string) (map[string]int, error) {
	sizes := map[string]int{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if filepath.Dir(rel) == "locks" {
			return nil
		}
		sizes[rel] = int(fi.Size())
		return nil
	})
	return sizes, err
}

type setting struct {
	name string
	opts []zstd.EOption
	dict bool // check that the frames decode with the dictionary
}

// measure compresses every class blob by blob with each setting, one
// encoder on one locked thread, and prints the stored bytes (a blob that
// does not shrink counts as stored raw, as mailvault stores it) and the
// thread's CPU seconds.
func measure(byClass map[string][]blob, dictSample, dictSize int, dictFile string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// mailvault's own settings (archive/repo.go): a 2 MiB window (trees
	// get 1 MiB there, which no tree blob of the corpus reaches), no
	// checksum; the text encoder Huffman-codes blocks without matches,
	// the form encoder stores them raw.
	base := func(lvl zstd.EncoderLevel, lit bool, extra ...zstd.EOption) []zstd.EOption {
		return append([]zstd.EOption{zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(2 << 20), zstd.WithEncoderCRC(false), zstd.WithAllLitEntropyCompression(lit)}, extra...)
	}
	var sample [][]byte
	for i, b := range byClass["text"] {
		if i%dictSample == 0 {
			sample = append(sample, b.payload)
		}
	}
	var d []byte
	var err error
	if dictFile != "" {
		if d, err = os.ReadFile(dictFile); err != nil {
			return err
		}
		// Which blobs the file was trained on is the trainer's business;
		// cli.sh's zstd --train takes every 10th, as floor does by default.
		fmt.Printf("\ntext dictionary: %s, %d bytes\n", dictFile, len(d))
	} else {
		t0 := threadCPU()
		d, err = dict.BuildZstdDict(sample, dict.Options{MaxDictSize: dictSize, HashBytes: 6, ZstdDictCompat: true, ZstdLevel: zstd.SpeedDefault})
		if err != nil {
			return fmt.Errorf("dictionary: %w", err)
		}
		fmt.Printf("\ntext dictionary: %d bytes from %d of %d text blobs, %.2f CPU s to build\n", len(d), len(sample), len(byClass["text"]), threadCPU()-t0)
		if err := os.WriteFile("floor-text.dict", d, 0o644); err == nil {
			fmt.Println("(written to floor-text.dict)")
		}
	}

	fmt.Println("\n| class | setting | stored MB | ratio to payload | ratio, blobs not in the dictionary's sample | CPU s |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, c := range classes {
		lit := !strings.HasPrefix(c, "form") && c != "photo"
		settings := []setting{
			{name: "fastest (mailvault's data level)", opts: base(zstd.SpeedFastest, lit)},
			{name: "default", opts: base(zstd.SpeedDefault, lit)},
			{name: "better", opts: base(zstd.SpeedBetterCompression, lit)},
			{name: "best", opts: base(zstd.SpeedBestCompression, lit)},
		}
		if c == "text" || c == "tree" {
			settings = append(settings,
				setting{name: "fastest + text dict", opts: base(zstd.SpeedFastest, lit, zstd.WithEncoderDict(d)), dict: true},
				setting{name: "default + text dict", opts: base(zstd.SpeedDefault, lit, zstd.WithEncoderDict(d)), dict: true},
				setting{name: "better + text dict", opts: base(zstd.SpeedBetterCompression, lit, zstd.WithEncoderDict(d)), dict: true})
		}
		payload := 0
		for _, b := range byClass[c] {
			payload += len(b.payload)
		}
		for _, s := range settings {
			enc, err := zstd.NewWriter(nil, s.opts...)
			if err != nil {
				return err
			}
			var out []byte
			// held: the blobs the dictionary was not trained on, whose
			// ratio shows how much of a dictionary's gain is in-sample.
			stored, held, heldPayload := 0, 0, 0
			t0 := threadCPU()
			for i, b := range byClass[c] {
				out = enc.EncodeAll(b.payload, out[:0])
				n := min(len(out), len(b.payload))
				stored += n
				if c != "text" || i%dictSample != 0 {
					held += n
					heldPayload += len(b.payload)
				}
			}
			cpu := threadCPU() - t0
			if s.dict {
				if err := checkDict(enc, d, byClass[c]); err != nil {
					return fmt.Errorf("%s, %s: %w", c, s.name, err)
				}
			}
			enc.Close()
			fmt.Printf("| %s | %s | %.2f | %.3f | %.3f | %.2f |\n", c, s.name, mb(stored), float64(stored)/float64(max(payload, 1)), float64(held)/float64(max(heldPayload, 1)), cpu)
		}
	}
	return nil
}

// checkDict decodes every blob's frame with a decoder given the
// dictionary, untimed, so that a size in the table is one a reader gets
// the blob back from; it writes the first blob's frame to
// floor-text-sample.zst for `zstd -d -D floor-text.dict` to try.
func checkDict(enc *zstd.Encoder, d []byte, blobs []blob) error {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderDicts(d))
	if err != nil {
		return err
	}
	defer dec.Close()
	var out, back []byte
	for i, b := range blobs {
		out = enc.EncodeAll(b.payload, out[:0])
		if back, err = dec.DecodeAll(out, back[:0]); err != nil {
			return err
		}
		if !bytes.Equal(back, b.payload) {
			return fmt.Errorf("blob %d does not decode to itself", i)
		}
		if i == 0 {
			if err := os.WriteFile("floor-text-sample.zst", out, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func mb(n int) float64 { return float64(n) / 1e6 }
