#!/usr/bin/env bash
# Installs an offramp bundle on a Jetson (JetPack 5, 6 or 7): the binary and
# engine sets under /opt/offramp, settings under /etc/offramp, the two
# systemd units, and, where TensorRT's headers are installed, the TensorRT
# shim built against this Jetson's TensorRT. Run from the unpacked bundle:
# sudo ./install.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The binary is linked for glibc 2.31 (JetPack 5), so it runs on JetPack 5,
# 6 and 7; refuse before installing anything if this system's is older.
need=$(grep -o '"glibc_required": *"[0-9.]*"' "$here/BUNDLE.json" | grep -o '[0-9][0-9.]*' || true)
have=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "this bundle's binary needs glibc $need; this system has $have: use the JetPack 5 bundle (glibc 2.31)" >&2
  exit 1
fi
[ "$(id -u)" = 0 ] || { echo "run as root (sudo ./install.sh)" >&2; exit 1; }
arch=$(uname -m)
[ "$arch" = aarch64 ] || { echo "this bundle is for aarch64 (Jetson); this machine is $arch" >&2; exit 1; }
if [ -r /etc/nv_tegra_release ]; then
  echo "L4T: $(head -n1 /etc/nv_tegra_release)"
fi
install -d /opt/offramp/bin /opt/offramp/lib /opt/offramp/engines /etc/offramp/zenoh
install -m 755 "$here/bin/offramp" /opt/offramp/bin/offramp
cp -r "$here/engines/." /opt/offramp/engines/
install -m 644 "$here"/config/zenoh/*.json5 /etc/offramp/zenoh/
install -m 755 "$here/config/zenoh/make-certs.sh" /etc/offramp/zenoh/
# Keep an edited env file.
[ -e /etc/offramp/offramp.env ] || install -m 644 "$here/config/offramp.env" /etc/offramp/offramp.env
install -m 644 "$here"/systemd/*.service /etc/systemd/system/
systemctl daemon-reload
/opt/offramp/bin/offramp --version
# The TensorRT shim is what differs between TensorRT versions: build it here,
# against this Jetson's headers, and check that it opens libnvinfer.
if /opt/offramp/bin/offramp build-shim --out /opt/offramp/lib/libofframp_trt_shim.so; then
  echo "TensorRT shim: /opt/offramp/lib/libofframp_trt_shim.so"
else
  echo "TensorRT shim not built (see the error above): the CPU backend works; for TensorRT install" >&2
  echo "  sudo apt install nvidia-tensorrt-dev cuda-toolkit   # then: sudo /opt/offramp/bin/offramp build-shim" >&2
fi
cat <<MSG
Installed. Next:
  1. Edit /etc/offramp/offramp.env (camera, serial device, robot name).
  2. Optional, TensorRT: /opt/offramp/bin/offramp build --backend tensorrt \\
       --onnx /opt/offramp/engines/demo --out /opt/offramp/engines/demo-trt
     then set OFFRAMP_ENGINES=/opt/offramp/engines/demo-trt.
  3. systemctl enable --now offramp-bridge offramp
  4. journalctl -fu offramp
MSG
