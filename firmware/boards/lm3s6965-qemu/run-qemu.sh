#!/usr/bin/env bash
# Boots a firmware ELF on QEMU's lm3s6965evb. UART0 is a unix socket
# ($OFFRAMP_UART, default ./uart0.sock) that waits for a host to connect,
# e.g. `offramp bridge --serial unix:uart0.sock`; defmt logs arrive over
# semihosting and are decoded with defmt-print.
set -euo pipefail
elf=${1:?usage: run-qemu.sh FIRMWARE.elf}
sock=${OFFRAMP_UART:-uart0.sock}
rm -f "$sock"
echo "waiting for a host on unix socket $sock" >&2
qemu-system-arm -machine lm3s6965evb -cpu cortex-m3 -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -chardev "socket,id=uart0,path=$sock,server=on,wait=on" -serial chardev:uart0 \
  -kernel "$elf" | defmt-print -e "$elf"
