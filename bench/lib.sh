# What bench/run and bench/signup-pg share: sourced once ROOT is set and,
# for the signup step, DURATION, BULLETIN and CEILING. Sets up the work
# directory and the cleanup on exit, installs what is missing, starts
# Postfix's smtp-sink on a free port (SINK_PORT), and defines the helpers.
CONCURRENCY=20
WRK_CONNECTIONS=32
PG=postgres://postgres@127.0.0.1:5432
WORK=$(mktemp -d /tmp/bulletin-bench.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in $(psql "$PG/postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'bulletin_bench_%'" 2>/dev/null); do
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

run() { echo "+ $*" >&2; "$@"; }
need() {
    command -v "$1" >/dev/null && return
    echo "installing $2" >&2
    apt-get update -qq
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need smtp-sink postfix
need smtp-source postfix

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
fresh_db() { # backend name -> URL of an empty database
    if [ "$1" = sqlite ]; then echo "sqlite://$WORK/$2.db"
    else psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS bulletin_bench_$2" -c "CREATE DATABASE bulletin_bench_$2" >/dev/null; echo "$PG/bulletin_bench_$2"; fi
}
sql() { # backend url query
    if [ "$1" = sqlite ]; then sqlite_query "${2#sqlite://}" "$3"; else psql "$2" -Atc "$3"; fi
}
sqlite_query() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$1" "$2"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else '-')" "$1" "$2"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2"; }
per_sec() { python3 -c "import sys; print(round(float(sys.argv[1])/float(sys.argv[2])))" "$1" "$2"; }


SINK_PORT=$(free_port)
# Background processes start directly (not through `run`), so $! is their own PID.
echo "+ smtp-sink -u nobody 127.0.0.1:$SINK_PORT 1024" >&2
smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 1024 & PIDS+=($!)
wait_port "$SINK_PORT"

config() { # url file [extra toml]
    cat > "$2" <<CFG
[server]
listen = "127.0.0.1:${PORT:-8080}"
public_url = "http://127.0.0.1:${PORT:-8080}"
[database]
url = "$1"
max_connections = ${MAX_CONNECTIONS:-8}
[mail]
transport = "smtp"
smtp_url = "smtp://127.0.0.1:${SMTP_PORT:-$SINK_PORT}"
[signup]
per_ip_per_minute = 100000000
[sending]
concurrency = $CONCURRENCY
${3:-}
CFG
}

wrk_run() { # url -> "requests/s p99_ms"
    local out
    out=$(run wrk -t2 -c$WRK_CONNECTIONS -d${DURATION}s --latency -s "$ROOT/bench/signup.lua" "$1")
    echo "$out" >&2
    python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if errors: print(f"warning: {errors.group(1)} non-2xx responses", file=sys.stderr)
print(f"{rps:.0f} {p99:.1f}")
PY
}

# The signup step: the ceiling, then Bulletin, on fresh databases of BACKEND,
# each loaded by wrk for DURATION s; then the confirmation mail drained.
# Leaves "rps p99 ceiling_rps ceiling_p99 confirmations/s signups sent
# queued-at-end" in SIGNUP_FIGURES (a global, not a subshell: the servers it
# starts stay in PIDS for the cleanup).
signup_step() {
    local BACKEND=$1 PORT URL CEIL_PID SERVE_PID START LEFT
    PORT=$(free_port); URL=$(fresh_db $BACKEND ceiling)
    echo "+ $CEILING $URL 127.0.0.1:$PORT" >&2
    "$CEILING" "$URL" "127.0.0.1:$PORT" & CEIL_PID=$!; PIDS+=($CEIL_PID)
    wait_port "$PORT"
    read -r CEIL_RPS CEIL_P99 < <(wrk_run "http://127.0.0.1:$PORT")
    kill $CEIL_PID; wait $CEIL_PID 2>/dev/null || true

    PORT=$(free_port); URL=$(fresh_db $BACKEND signup)
    config "$URL" "$WORK/signup.toml"
    echo "+ $BULLETIN --config $WORK/signup.toml serve" >&2
    RUST_LOG=warn "$BULLETIN" --config "$WORK/signup.toml" serve & SERVE_PID=$!; PIDS+=($SERVE_PID)
    wait_port "$PORT"
    START=$(now)
    read -r RPS P99 < <(wrk_run "http://127.0.0.1:$PORT")
    SIGNUPS=$(sql $BACKEND "$URL" "SELECT COUNT(*) FROM subscribers")
    QUEUED_AT_END=$(sql $BACKEND "$URL" "SELECT COUNT(*) FROM deliveries WHERE status IN ('queued','retry','sending')")
    # Confirmation mail: wait for the queue to drain, then signups/s from the first request to the last mail.
    for _ in $(seq 1 600); do
        LEFT=$(sql $BACKEND "$URL" "SELECT COUNT(*) FROM deliveries WHERE status IN ('queued','retry','sending')")
        [ "$LEFT" = 0 ] && break; sleep 0.5
    done
    SENT=$(sql $BACKEND "$URL" "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'")
    LAST=$(sql $BACKEND "$URL" "SELECT MAX(sent_at) FROM deliveries")
    CONFIRM_RATE=$(per_sec "$SENT" "$(elapsed "$START" "$LAST.999")")
    SIGNUP_FIGURES="$RPS $P99 $CEIL_RPS $CEIL_P99 $CONFIRM_RATE $SIGNUPS $SENT $QUEUED_AT_END"
}
