#!/usr/bin/env bash
# Makes a private CA and the certificates for a secured offramp deployment:
# the runtime (CN offramp-runtime), the bridge (CN offramp-bridge) and the
# operator's console (CN offramp-operator: `offramp operator stop`), all
# for localhost/127.0.0.1 (add your robot's host names to SAN below).
# Pass extra common names to make more (e.g. a monitoring tool).
#
#   config/zenoh/make-certs.sh /etc/offramp/certs [extra-cn ...]
#
# Keep ca.key off the robot: only ca.pem, <cn>.pem and <cn>.key go there.
set -euo pipefail
out=${1:?usage: make-certs.sh OUTDIR [extra-cn ...]}
shift
mkdir -p "$out"
cd "$out"
days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
  -subj "/CN=offramp-ca" -keyout ca.key -out ca.pem 2>/dev/null
for cn in offramp-runtime offramp-bridge offramp-operator "$@"; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$cn" -keyout "$cn.key" -out "$cn.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$cn.ext"
  openssl x509 -req -in "$cn.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -extfile "$cn.ext" -out "$cn.pem" 2>/dev/null
  rm -f "$cn.csr" "$cn.ext"
done
chmod 600 ./*.key
echo "certificates in $out: ca.pem, offramp-runtime.{pem,key}, offramp-bridge.{pem,key}, offramp-operator.{pem,key}${*:+, $*}"
