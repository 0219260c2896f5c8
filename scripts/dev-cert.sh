#!/usr/bin/env bash
# A throwaway self-signed certificate for conf/edge.yaml's `tls:` section (conf/tls/, not
# committed), so that `check`, `openapi` and `run` work on a development machine and in CI.
# Production installs the real chain and key at the same place (/etc/prospect-edge/tls/).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=conf/tls
if [ -s "$dir/fullchain.pem" ] && [ -s "$dir/privkey.pem" ]; then
  exit 0
fi
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/privkey.pem" -out "$dir/fullchain.pem" 2>/dev/null
chmod 0600 "$dir/privkey.pem"
echo "wrote a throwaway certificate to $dir/ (valid 30 days, for localhost)"
