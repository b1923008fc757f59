#!/bin/sh
# The example application of the Containerfile's `example-app` stage. locksmith-run starts it only
# after the quorum unlocked the secrets of /etc/caution/secrets/ into its environment; it shows
# what it received: a start line, then one JSON object mapping each NAME given as an argument to
# its value (null when unset), e.g. `podman run IMAGE DATABASE_URL API_TOKEN`. A real application
# uses its secrets rather than printing them.
set -eu
echo "example-app: started with the secrets of the quorum"
exec python3.11 -c 'import json, os, sys
print(json.dumps({name: os.environ.get(name) for name in sys.argv[1:]}, ensure_ascii=False))' "$@"
