#!/usr/bin/env bash
# Makes a private CA and the certificates for a secured offramp deployment:
# the runtime (CN offramp-runtime), the bridge (CN offramp-bridge) and the
# operator's console (CN offramp-operator: `offramp operator stop`), all
# valid for localhost and 127.0.0.1, plus the names and addresses in
# OFFRAMP_CERT_SAN (the robot's and servers' as the others dial them).
# Pass extra common names to make more: an offload server is
# offramp-offload-NAME (`offramp serve --name NAME`).
#
#   OFFRAMP_CERT_SAN="DNS:robot.local,IP:10.0.0.5" \
#     config/zenoh/make-certs.sh /etc/offramp/certs offramp-offload-edge-a
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
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1%s\nextendedKeyUsage=serverAuth,clientAuth\n' "${OFFRAMP_CERT_SAN:+,$OFFRAMP_CERT_SAN}" >"$cn.ext"
  openssl x509 -req -in "$cn.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -extfile "$cn.ext" -out "$cn.pem" 2>/dev/null
  rm -f "$cn.csr" "$cn.ext"
done
chmod 600 ./*.key
echo "certificates in $out: ca.pem, offramp-runtime.{pem,key}, offramp-bridge.{pem,key}, offramp-operator.{pem,key}${*:+, $*}"
