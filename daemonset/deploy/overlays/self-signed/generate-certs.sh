#!/usr/bin/env bash
# Writes ca.crt, tls.crt and tls.key next to this script: a private CA (10 years) and the
# webhook's serving certificate (1 year) for shardcache-webhook.shardcache-system.svc.
set -euo pipefail
cd "$(dirname "$0")"
service=shardcache-webhook
namespace=shardcache-system
days=${DAYS:-365}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=shardcache-webhook-ca" -keyout "$tmp/ca.key" -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$service.$namespace.svc" -keyout tls.key -out "$tmp/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\n' \
  "$service" "$service" "$namespace" "$service" "$namespace" "$service" "$namespace" \
  > "$tmp/ext.cnf"
printf 'extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' >> "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/tls.csr" -CA ca.crt -CAkey "$tmp/ca.key" -CAcreateserial \
  -days "$days" -extfile "$tmp/ext.cnf" -out tls.crt 2>/dev/null
chmod 600 tls.key
echo "wrote ca.crt tls.crt tls.key in $(pwd)"
