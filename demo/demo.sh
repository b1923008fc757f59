#!/usr/bin/env bash
# make demo: a full Locksmith quorum unlock on loopback, from nothing, with the real programs.
#
#   three holders make keys  →  a one-shot Keymaker (simulated NSM) creates a 2-of-3 quorum
#   →  the developer encrypts a .env  →  the "enclave" boots with locksmith-run: locksmithd
#   waits on 127.0.0.1, two holders send their shards, keyforkd starts, locksmith-oneshot's
#   exports are checked and eval'd  →  the application prints what it sees.
#
# Everything runs from the zipapp through busybox symlinks, as in an image. The simulated NSM
# stands in for both Nitro enclaves (Keymaker's and the application's), so its root is passed
# explicitly with --trust-root: it is never trusted by default. No process is left behind.
set -euo pipefail

zipapp="$(realpath "${1:-dist/locksmith.pyz}")"
python="${PYTHON:-python3.11}"
case "$python" in */*) python="$(realpath "$python")" ;; esac
work="$(mktemp -d "${TMPDIR:-/tmp}/locksmith-demo.XXXXXX")"
pids=()

cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # keyforkd runs in its own session (it outlives locksmithd, as in an enclave): stop it and
    # wait until it has removed its socket and wiped the secret.
    pkill -f -- "--socket $work/" 2>/dev/null || true
    for _ in $(seq 50); do pgrep -f -- "--socket $work/" >/dev/null || break; sleep 0.1; done
    pkill -KILL -f -- "--socket $work/" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
    local what=$1 limit=$2; shift 2
    for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "demo: $what did not come up" >&2; return 1
}

bin="$work/bin"
mkdir -p "$bin"
for name in caution keymaker locksmithd keyforkd locksmith-oneshot; do ln -s "$zipapp" "$bin/$name"; done
cp "$(dirname "$0")/../locksmith/scripts/run.sh" "$bin/locksmith-run"
chmod 0755 "$bin/locksmith-run"
export PATH="$bin:$PATH" SHIV_ROOT="${SHIV_ROOT:-$work/shiv}"
nsm="$work/nsm"

step "1. Three shard-holders create development keys"
cd "$work"
for who in alice bob carol; do
    caution secret keygen "$who.asc" --name "${who^}" --email "$who@example.org" --shoot-self-in-foot 2>&1 \
        | grep -E '^(Fingerprint|Wrote)'
    cat "$who.asc" >> holders.asc
done

step "2. A one-shot Keymaker (simulated NSM) creates a 2-of-3 quorum"
keymaker_port="$(free_port)"
keymaker --listen "127.0.0.1:$keymaker_port" --nsm simulated --nsm-dir "$nsm" --one-shot \
    2> "$work/keymaker.log" &
pids+=($!)
wait_for "keymaker" 20 "$python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$keymaker_port/health')"
mkdir -p app/.caution
cd app
touch Procfile   # marks a Caution repository: the bundle is saved in .caution/
# The Keymaker's expected code identity (here: the simulated NSM's PCRs) as a PCR policy.
"$python" - "$nsm/trusted_hashes.json" > .caution/keymaker-pcr-policy.json <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
print(json.dumps({"sets": [{"pcrs": {"0": h["pcr0"], "1": h["pcr1"], "2": h["pcr2"]}}]}))
PY
KEYMAKER_URL="http://127.0.0.1:$keymaker_port" caution secret new ../holders.asc \
    --threshold 2 --max 3 --name demo --trust-root "$nsm/root.pem"
wait "${pids[-1]}"   # --one-shot: the Keymaker exits after its one quorum
echo "keymaker exited after one quorum" >&2
caution secret inspect .caution/quorum-bundle.json --trust-root "$nsm/root.pem" 2>&1 | sed 's/^/  /'

step "3. The developer encrypts the application's .env to the quorum key"
cat > .env <<'ENV'
DATABASE_URL="postgres://app:s3cr3t@db.internal:5432/app"
API_TOKEN='it'"'"'s a "quoted" token # with $(no) `expansion`'
TLS_KEY="-----BEGIN DEMO KEY-----
bXVsdGktbGluZSBzZWNyZXQ=
-----END DEMO KEY-----"
GREETING=grüße☃
ENV
caution secret encrypt --trust-root "$nsm/root.pem"

step "4. The enclave boots: locksmith-run waits for the quorum, then starts the app"
enclave_port="$(free_port)"
export LOCKSMITH_BUNDLE="$PWD/.caution/quorum-bundle.json" \
       LOCKSMITH_KEYMAKER_PCR_POLICY="$PWD/.caution/keymaker-pcr-policy.json" \
       LOCKSMITH_SECRETS_DIR="$PWD/.caution/secrets" \
       LOCKSMITHD_LISTEN_ADDR="127.0.0.1:$enclave_port" \
       LOCKSMITH_NSM=simulated LOCKSMITH_NSM_DIR="$nsm" \
       KEYFORKD_SOCKET_PATH="$work/keyforkd/keyforkd.sock"
mkdir -p "$work/keyforkd"
# locksmithd takes the development root only as an option (never from the environment), so the
# demo's enclave image wraps it; a real image trusts only the AWS root.
rm "$bin/locksmithd"
printf '#!/bin/sh\nexec "%s" locksmithd --trust-root "%s" "$@"\n' "$zipapp" "$nsm/root.pem" > "$bin/locksmithd"
chmod 0755 "$bin/locksmithd"
app='printf "  DATABASE_URL=%s\n  API_TOKEN=%s\n  GREETING=%s\n  TLS_KEY=%s\n" "$DATABASE_URL" "$API_TOKEN" "$GREETING" "$TLS_KEY"'
locksmith-run sh -c "$app" > "$work/app.out" 2> "$work/enclave.log" &
enclave=$!
pids+=("$enclave")
wait_for "locksmithd" 20 grep -q "listening on 127.0.0.1:$enclave_port" "$work/enclave.log"

step "5. Two holders verify the enclave's attestation and send their shards"
for who in alice bob; do
    echo "-- $who" >&2
    caution secret send-shard --address "127.0.0.1:$enclave_port" --keyring "../$who.private.asc" \
        --trusted-hashes "$nsm/trusted_hashes.json" --trust-root "$nsm/root.pem"
done

step "6. The application starts with its secrets"
status=0
wait "$enclave" || status=$?
sed 's/^/  enclave: /' "$work/enclave.log" >&2
if [ "$status" -ne 0 ]; then echo "demo: the enclave did not boot (exit $status)" >&2; exit "$status"; fi
cat "$work/app.out"
# What the .env above means, written independently of every locksmith component:
printf '  DATABASE_URL=%s\n  API_TOKEN=%s\n  GREETING=%s\n  TLS_KEY=%s\n' \
    'postgres://app:s3cr3t@db.internal:5432/app' \
    "it's a \"quoted\" token # with \$(no) \`expansion\`" \
    'grüße☃' \
    "$(printf -- '-----BEGIN DEMO KEY-----\nbXVsdGktbGluZSBzZWNyZXQ=\n-----END DEMO KEY-----')" \
    > "$work/expected.out"
if ! cmp -s "$work/app.out" "$work/expected.out"; then
    echo "demo: the application's environment differs from the .env values" >&2
    diff "$work/expected.out" "$work/app.out" >&2 || true
    exit 1
fi
echo >&2
echo "demo: unlocked a 2-of-3 quorum; the application's environment matches the .env byte for byte" >&2
