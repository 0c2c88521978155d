# Shared by scripts/demo.sh, scripts/test.sh, scripts/bench.sh and scripts/chaos.sh. Source it; do not run it.
#
#   ensure_packages        install missing apt packages (as root), else print the apt line and exit
#   pg_start               start a private, throwaway PostgreSQL cluster and export PG* for it
#   pg_stop                stop it and delete its directory (also installed as an EXIT trap)

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Build and run dependencies (libraries and headers) plus the tools the tests and benchmarks use
# as fixture generators and peers. The product itself never runs ffmpeg, ffprobe or file.
APT_PACKAGES=(
    pkg-config libpq-dev libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libswresample-dev libavutil-dev libmagic-dev libssl-dev
    libheif-dev libraw-dev libheif-examples libavif-bin libturbojpeg0-dev libjxl-dev
    postgresql-15 postgresql-contrib ffmpeg file openssl coreutils hyperfine
    systemd make
    imagemagick libvips-tools time
    chromium libheif-examples   # the gallery's browser test; HEIC sample in the demo (heif-enc)
    faketime socat util-linux python3   # make chaos (a skewed clock, a TCP proxy to freeze, mount/runuser), make fuzz's seed generator, make soak's driver, the demo's EXIF writer
    liblcms2-dev zlib1g-dev   # colour management of the stills (LittleCMS 2; zlib for PNG iCCP)
    libjpeg-turbo-progs   # make bench: djpeg, the cost of libjpeg-turbo's decode alone beside the photo row
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then return 0; fi
    if [[ $(id -u) -eq 0 ]]; then
        log "installing missing packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "Missing packages. Run this as root, then try again:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    if ! command -v swift >/dev/null 2>&1; then
        echo "swift is not on PATH; install Swift 6.1 or newer (https://swift.org/install)." >&2
        exit 1
    fi
}

pg_bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
    done
    command -v pg_config >/dev/null && pg_config --bindir && return 0
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15." >&2
    return 1
}

# Runs a command as the cluster's owner: PostgreSQL refuses to run as root.
as_pg_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$PG_OWNER" -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    PG_BIN="$(pg_bindir)"
    PG_OWNER="$(id -un)"
    [[ $(id -u) -eq 0 ]] && PG_OWNER=postgres
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    fi
    PG_DIR="$(mktemp -d /tmp/medianest-pg.XXXXXX)"
    chmod 755 "$PG_DIR"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OWNER" "$PG_DIR"
    trap pg_stop EXIT
    trap 'exit 130' INT TERM
    local pwfile="$PG_DIR/pwfile"
    echo "medianest-test-password" >"$pwfile"
    chmod 644 "$pwfile"
    log "initdb in $PG_DIR"
    as_pg_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U medianest --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        if as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null 2>&1; then
            export PGHOST="$PG_DIR" PGPORT="$port" PGUSER=medianest PGDATABASE=postgres
            export MEDIANEST_PG_BINDIR="$PG_BIN" MEDIANEST_TEST_PG_TCP_PORT="$port"
            export MEDIANEST_TEST_PG_PASSWORD="medianest-test-password"
            export DATABASE_URL="host=$PG_DIR port=$port user=medianest dbname=postgres"
            log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $PG_DIR (socket) and 127.0.0.1:$port"
            return 0
        fi
    done
    cat "$PG_DIR/server.log" >&2
    echo "could not start PostgreSQL" >&2
    return 1
}

pg_stop() {
    if [[ -n "${PG_DIR:-}" && -d "$PG_DIR" ]]; then
        as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}

swift_bin_path() { swift build -c "${1:-debug}" --show-bin-path; }
