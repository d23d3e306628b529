#!/bin/sh
# Self-signed TLS for the kbl extender, without cert-manager.
#
# Makes a private CA (10 years) and a serving certificate for the extender's Service (1 year,
# ECDSA P-256), with the DNS names kbl-scheduler uses to reach it, and prints the kubectl command
# that stores them in the Secret the extender and the scheduler mount (tls.crt, tls.key, ca.crt).
#
# Usage: manifests/tls/make-certs.sh [OUT_DIR]
#   env: NAMESPACE (kbl-system), SERVICE (kbl-extender), SECRET (kbl-extender-tls), DAYS (365)
# Re-run before the certificate expires (or use the cert-manager option, which renews it).
set -eu

OUT=${1:-./kbl-tls}
NAMESPACE=${NAMESPACE:-kbl-system}
SERVICE=${SERVICE:-kbl-extender}
SECRET=${SECRET:-kbl-extender-tls}
DAYS=${DAYS:-365}
HOST="$SERVICE.$NAMESPACE.svc"

mkdir -p "$OUT"
umask 077

openssl req -x509 -new -nodes -sha256 -days 3650 \
  -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$OUT/ca.key" -out "$OUT/ca.crt" \
  -subj "/CN=$SERVICE-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -new -nodes -sha256 \
  -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$OUT/tls.key" -out "$OUT/tls.csr" \
  -subj "/CN=$HOST" 2>/dev/null

cat > "$OUT/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$HOST,DNS:$HOST.cluster.local,DNS:$SERVICE.$NAMESPACE,DNS:$SERVICE
EXT

openssl x509 -req -sha256 -days "$DAYS" \
  -in "$OUT/tls.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
  -extfile "$OUT/server.ext" -out "$OUT/tls.crt" 2>/dev/null

rm -f "$OUT/tls.csr" "$OUT/server.ext" "$OUT/ca.srl"
openssl verify -CAfile "$OUT/ca.crt" "$OUT/tls.crt" >/dev/null

echo "wrote $OUT/ca.crt, $OUT/tls.crt, $OUT/tls.key (keep $OUT/ca.key offline to sign renewals)"
echo "store them in the cluster with:"
echo "  kubectl -n $NAMESPACE create secret generic $SECRET --type=kubernetes.io/tls \\"
echo "    --from-file=tls.crt=$OUT/tls.crt --from-file=tls.key=$OUT/tls.key --from-file=ca.crt=$OUT/ca.crt"
