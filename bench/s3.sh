# shellcheck shell=bash
# s3.sh: the MinIO side of `bench/compare.sh --s3`, sourced by it (not run
# on its own). It starts a MinIO server on 127.0.0.1 with its data in the
# benchmark's work directory and answers what the benchmark asks of it:
# buckets, the bytes stored in a bucket, the server's CPU time and the
# requests it served.
#
# The few S3 requests it makes go through curl's --aws-sigv4 rather than an
# S3 client: curl is on every Debian machine, and MinIO's own `mc` would be
# another multi-minute build.
#
# Needs from compare.sh: die, log, REPO_ROOT.

S3_USER=mailvault-bench
S3_SECRET=mailvault-bench-secret
S3_REGION=us-east-1
# Set by minio_start: the server's pid, its host:port, and its binary
# (compare.sh names the build in the report).
MINIO_PID=
MINIO_ADDR=
MINIO_BIN=

# s3_curl METHOD PATH-AND-QUERY [curl args...]: one signed request to the
# server; fails (with the server's error on stderr) on any non-2xx answer.
s3_curl() {
	local method=$1 p=$2
	shift 2
	curl -sS --fail-with-body --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_USER:$S3_SECRET" \
		-X "$method" "$@" "http://$MINIO_ADDR/$p"
}

# minio_start DIR: starts MinIO with its data in DIR/data and its log in
# DIR/minio.log, waits until it answers an authenticated request, and sets
# MINIO_ADDR and MINIO_PID. Ports are random (a taken one makes MinIO exit,
# and the next try picks others). setpriv ties the server's life to this
# shell's, so that even a killed benchmark leaves no server behind; the
# EXIT trap stops it in the ordinary case (minio_stop).
minio_start() {
	local dir=$1 bin try port i
	bin=$("$REPO_ROOT/scripts/minio.sh") || die "scripts/minio.sh failed to provide MinIO"
	# shellcheck disable=SC2034 # read by compare.sh
	MINIO_BIN=$bin
	mkdir -p "$dir/data"
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		MINIO_ADDR=127.0.0.1:$port
		# Public metrics: minio_requests reads them without a token.
		MINIO_ROOT_USER=$S3_USER MINIO_ROOT_PASSWORD=$S3_SECRET MINIO_BROWSER=off MINIO_UPDATE=off \
			MINIO_PROMETHEUS_AUTH_TYPE=public \
			setpriv --pdeathsig KILL "$bin" server --quiet --address "$MINIO_ADDR" \
			--console-address "127.0.0.1:$((port + 1))" "$dir/data" >"$dir/minio.log" 2>&1 &
		MINIO_PID=$!
		# Its health endpoint answers before the object layer is up, so
		# wait for a real request (list buckets) instead; 30 s is far
		# more than MinIO takes to start on an empty directory.
		for ((i = 0; i < 300; i++)); do
			if ! kill -0 "$MINIO_PID" 2>/dev/null; then
				break
			fi
			if s3_curl GET "" -o /dev/null 2>/dev/null; then
				log "MinIO $MINIO_ADDR (pid $MINIO_PID, data in $dir/data)"
				return 0
			fi
			sleep 0.1
		done
		minio_stop
		log "MinIO did not come up on $MINIO_ADDR (try $try): $(tail -n 3 "$dir/minio.log" | tr '\n' ' ')"
	done
	die "cannot start MinIO ($bin); log: $dir/minio.log"
}

# minio_stop kills the server started by minio_start, if any, and waits for
# it so that its data directory can be removed.
minio_stop() {
	if [[ -n $MINIO_PID ]]; then
		kill "$MINIO_PID" 2>/dev/null || true
		wait "$MINIO_PID" 2>/dev/null || true
		MINIO_PID=
	fi
}

# s3_make_bucket NAME: creates a bucket, so that neither tool's init pays
# for it.
s3_make_bucket() {
	s3_curl PUT "$1" -o /dev/null || die "cannot create bucket $1 on $MINIO_ADDR"
}

# s3_bucket_bytes NAME prints the sum of the sizes of all objects in a
# bucket: what a provider bills, without MinIO's own metadata (xl.meta).
# It pages with start-after (the last key of a page) and 1000 keys a page.
s3_bucket_bytes() {
	local bucket=$1 after="" page total=0 keys sizes last
	while :; do
		# curl 7.88 signs an --data-urlencode'd query differently from
		# how it sends it, so the query is written out sorted and
		# encoded by hand; the keys of both repositories are
		# [a-z0-9/] only, so encoding "/" is all it takes.
		page=$(s3_curl GET "$bucket?list-type=2&max-keys=1000${after:+&start-after=${after//\//%2F}}") ||
			die "cannot list bucket $bucket"
		keys=$(grep -o '<Key>[^<]*</Key>' <<<"$page" | sed 's/<[^>]*>//g') || true
		sizes=$(grep -o '<Size>[0-9]*</Size>' <<<"$page" | sed 's/<[^>]*>//g') || true
		[[ -z $sizes ]] || total=$(awk -v t="$total" '{ t += $1 } END { printf "%.0f", t }' <<<"$sizes")
		grep -q '<IsTruncated>true</IsTruncated>' <<<"$page" || break
		last=$(tail -n 1 <<<"$keys")
		[[ $last =~ ^[A-Za-z0-9._/-]+$ ]] || die "bucket $bucket: cannot page after key '$last'"
		after=$last
	done
	echo "$total"
}

# minio_cpu prints the CPU seconds (user + system) MinIO has used so far.
minio_cpu() {
	local stat
	stat=$(<"/proc/$MINIO_PID/stat") || die "MinIO (pid $MINIO_PID) is gone"
	# Fields after the ")" that ends the command name: utime and stime
	# are the 12th and 13th (fields 14 and 15 of proc(5)), in clock ticks.
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }' <<<"${stat##*) }"
}

# minio_requests prints, per S3 API (GetObject, PutObject, HeadObject …),
# how many requests MinIO has served so far: "api count" lines, sorted.
# The v3 metrics, because the v2 ones are cached for several seconds.
minio_requests() {
	curl -sS --fail "http://$MINIO_ADDR/minio/metrics/v3/api/requests" |
		sed -n 's/^minio_api_requests_total{name="\([^"]*\)".*type="s3".*} \([0-9.e+]*\)$/\1 \2/p' | sort ||
		die "cannot read MinIO's metrics"
}
