#!/bin/sh
# locksmith-run APP_COMMAND [ARGS...] — the enclave boot sequence (enclave.md §2).
#
# 1. remove a stale keyforkd socket; 2. run locksmithd in the foreground until the quorum is
# reached (it starts keyforkd and exits 0); 3. wait for the socket; 4. decrypt the secrets with
# locksmith-oneshot and eval its exports; 7. exec the application with them.
# Boot stops (non-zero exit, application never started) when locksmithd fails, the socket does
# not appear, or locksmith-oneshot fails: an application silently missing secrets is worse than
# one that does not start. Paths come from the environment so tests can run under a temp root.
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: locksmith-run APP_COMMAND [ARGS...]" >&2
  exit 2
fi

# The one socket-path resolution order (enclave.md §3); an empty variable counts as unset.
if [ -z "${KEYFORKD_SOCKET_PATH:-}" ]; then
  if [ -n "${XDG_RUNTIME_DIR:-}" ]; then
    KEYFORKD_SOCKET_PATH="$XDG_RUNTIME_DIR/keyforkd/keyforkd.sock"
  else
    KEYFORKD_SOCKET_PATH=/keyforkd.sock
  fi
fi
LOCKSMITH_BUNDLE="${LOCKSMITH_BUNDLE:-/etc/caution/bundle.json}"
LOCKSMITH_KEYMAKER_PCR_POLICY="${LOCKSMITH_KEYMAKER_PCR_POLICY:-/etc/caution/keymaker-pcr-policy.json}"
LOCKSMITH_SECRETS_DIR="${LOCKSMITH_SECRETS_DIR:-/etc/caution/secrets}"
LOCKSMITH_SOCKET_WAIT="${LOCKSMITH_SOCKET_WAIT:-30}"
# Exported so that locksmithd, keyforkd and locksmith-oneshot all use exactly these values.
export KEYFORKD_SOCKET_PATH LOCKSMITH_BUNDLE LOCKSMITH_KEYMAKER_PCR_POLICY LOCKSMITH_SECRETS_DIR

case "$LOCKSMITH_SOCKET_WAIT" in
  '' | *[!0-9]*)
    echo "locksmith-run: LOCKSMITH_SOCKET_WAIT must be a whole number of seconds" >&2
    exit 2
    ;;
esac

# 1. A socket left by an earlier run would make step 3 succeed before keyforkd is up.
if [ -S "$KEYFORKD_SOCKET_PATH" ]; then
  rm -f "$KEYFORKD_SOCKET_PATH"
fi

# 2. Foreground: returns once the quorum is reached and keyforkd signalled readiness.
status=0
locksmithd || status=$?
if [ "$status" -ne 0 ]; then
  echo "locksmith-run: locksmithd failed (exit $status)" >&2
  exit "$status"
fi

# 3. Existence only, no connection attempt: locksmithd exits 0 only after keyforkd is ready.
waited=0
while [ ! -S "$KEYFORKD_SOCKET_PATH" ]; do
  if [ "$waited" -ge "$LOCKSMITH_SOCKET_WAIT" ]; then
    echo "locksmith-run: keyforkd socket did not appear" >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done

# (5.) `exports` must not reach the application: a variable inherited from the environment
# stays exported when reassigned, so drop an inherited one before step 4 assigns it.
unset exports

# 4. Exactly this form: `eval "$(locksmith-oneshot)"` would eval an empty string and carry on
# when locksmith-oneshot fails. `exports` is not exported and deliberately not unset after
# the eval (5.).
if ! exports=$(locksmith-oneshot); then
  echo "locksmith-run: locksmith-oneshot failed; not starting the application" >&2
  exit 1
fi
eval "$exports"

# 7. The application replaces this script and inherits the exported variables.
exec "$@"
