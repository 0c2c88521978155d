#!/usr/bin/env bash
# MD5 + SHA-256 of a 1 GiB file: medianest-worker (one read, two digests in parallel) against
# coreutils md5sum + sha256sum, and against `openssl dgst -md5` alone. The file is in the page
# cache for every contender (24 GiB RAM), so this measures hashing, not the disk.
source "$(dirname "$0")/../bench-lib.sh"
file="$BENCH_DIR/one-gib.bin"
head -c 1073741824 /dev/urandom >"$file"
RUNS=3
ours=$(hyper_mean "$WORKER checksum $file")
coreutils=$(hyper_mean "md5sum $file && sha256sum $file")
openssl_md5=$(hyper_mean "openssl dgst -md5 $file")
printf 'MD5+SHA-256, 1 GiB\t%s\tmd5sum + sha256sum\t%s\t%s faster\t\n' "$(fmt_s "$ours")" "$(fmt_s "$coreutils")" "$(ratio "$ours" "$coreutils")"
printf 'MD5+SHA-256, 1 GiB\t%s\topenssl dgst -md5 alone\t%s\t%s of its time\t<= 1.15x\n' "$(fmt_s "$ours")" "$(fmt_s "$openssl_md5")" \
    "$(python3 -c 'import sys; print("%.2fx" % (float(sys.argv[1])/float(sys.argv[2])))' "$ours" "$openssl_md5")"
rm -f "$file"
