#!/usr/bin/env bash
# cli.sh: the command-line compressors on the payloads bench/floor dumped
# (`floor -dump DIR`: one file a blob under DIR/<class>/), for
# docs/PERFORMANCE.md "floor":
#
#   bash bench/floor/cli.sh DIR [class ...]     # default: text tree msgidx form-text form-pdf photo
#   CLI_EVERY=4 bash bench/floor/cli.sh DIR form-text   # every 4th blob only
#
# Per blob: `zstd -3`, `-9`, `-19` (no checksum, one thread), and for text
# (and trees) `zstd -3` and `-9` with a dictionary trained by `zstd --train`
# on every 10th text blob, kept as DIR/text-zstd.dict (for `floor -dict`).
# Whole class (all its blobs concatenated, an upper bound of what any
# compressor gets without mail-specific models):
# `zstd -19 --long=27` and `xz -9e`. Each line: class, method, bytes out,
# ratio to the payload, user+sys CPU seconds (from /usr/bin/time). The
# per-blob CPU includes opening and writing one file a blob. CLI_EVERY=n
# takes every n'th blob of each class (by name), for the slow compressors
# on the large classes: the ratios are the sample's, bytes and CPU too.
set -euo pipefail

DIR=${1:?usage: cli.sh DIR [class ...]}
shift
CLASSES=("$@")
((${#CLASSES[@]} > 0)) || CLASSES=(text tree msgidx form-text form-pdf photo)
EVERY=${CLI_EVERY:-1}
for t in zstd xz; do command -v "$t" >/dev/null || { echo "cli.sh: $t is needed" >&2; exit 1; }; done
OUT=$(mktemp -d "${TMPDIR:-/var/tmp}/floor-cli.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
# timed CMD...: runs CMD, prints its user+sys CPU seconds.
timed() {
	/usr/bin/time -f '%U %S' -o "$OUT/time" "$@" >/dev/null
	awk '{ printf "%.2f", $1 + $2 }' "$OUT/time"
}
row() { # class method out payload cpu
	awk -v c="$1" -v m="$2" -v o="$3" -v p="$4" -v t="$5" \
		'BEGIN { printf "| %s | %s | %.2f | %.3f | %s |\n", c, m, o / 1e6, o / p, t }'
}

# The dictionary: trained on every 10th text blob, as floor's own.
if [[ -d $DIR/text ]]; then
	mkdir -p "$OUT/sample"
	find "$DIR/text" -type f | sort | awk 'NR % 10 == 1' | xargs -r cp -t "$OUT/sample"
	cpu=$(timed zstd -q --train -r "$OUT/sample" -o "$DIR/text-zstd.dict" --maxdict=112640)
	echo "text dictionary: $DIR/text-zstd.dict, $(stat -c %s "$DIR/text-zstd.dict") bytes from $(find "$OUT/sample" -type f | wc -l) blobs, $cpu CPU s" >&2
	rm -rf "$OUT/sample"
fi

echo "| class | method | out MB | ratio to payload | CPU s |"
echo "|---|---|---|---|---|"
for c in "${CLASSES[@]}"; do
	[[ -d $DIR/$c ]] || continue
	src=$DIR/$c
	if ((EVERY > 1)); then
		src=$OUT/sample-$c
		mkdir -p "$src"
		find "$DIR/$c" -type f | sort | awk -v n="$EVERY" 'NR % n == 1' | xargs -r cp -t "$src"
	fi
	payload=$(bytes "$src")
	methods=("-3" "-9" "-19")
	if [[ -f $DIR/text-zstd.dict && ($c == text || $c == tree) ]]; then
		methods+=("-3 -D $DIR/text-zstd.dict" "-9 -D $DIR/text-zstd.dict")
	fi
	for m in "${methods[@]}"; do
		rm -rf "$OUT/z"
		mkdir "$OUT/z"
		# shellcheck disable=SC2086 # $m is the level and dictionary flags
		cpu=$(timed zstd -q -T1 --no-check $m -r "$src" --output-dir-flat "$OUT/z")
		name="zstd ${m/$DIR\/text-zstd.dict/dict} per blob"
		row "$c" "$name" "$(bytes "$OUT/z")" "$payload" "$cpu"
	done
	rm -rf "$OUT/z"
	find "$src" -type f | sort | xargs cat >"$OUT/all"
	cpu=$(timed sh -c "zstd -q -T1 --no-check -19 --long=27 -c '$OUT/all' >'$OUT/all.zst'")
	row "$c" "zstd -19 --long=27, whole class" "$(stat -c %s "$OUT/all.zst")" "$payload" "$cpu"
	cpu=$(timed sh -c "xz -q -9e -T1 -c '$OUT/all' >'$OUT/all.xz'")
	row "$c" "xz -9e, whole class" "$(stat -c %s "$OUT/all.xz")" "$payload" "$cpu"
	rm -f "$OUT/all" "$OUT/all.zst" "$OUT/all.xz"
	((EVERY == 1)) || rm -rf "$src"
done
