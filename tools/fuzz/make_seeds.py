#!/usr/bin/env python3
"""Writes the seed corpora of the firmware fuzz targets
(firmware/protocol/fuzz/seeds/<target>/): valid frames and message
sequences of the wire contract, so that fuzzing starts past COBS and CRC.

    python3 tools/fuzz/make_seeds.py

Keep PROTOCOL_VERSION and the message layout in step with
firmware/protocol/src (postcard: varint integers, enum variant index first,
f32 little endian).
"""
import os
import struct
import zlib

PROTOCOL_VERSION = 2
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "firmware", "protocol", "fuzz", "seeds")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def arm(seq):
    return bytes([0]) + varint(seq)


def drive(seq, valid_until_us, v, omega, exit_index=1, twist=True):
    setpoint = bytes([1 if twist else 0]) + struct.pack("<ff", v, omega)
    return bytes([1]) + varint(seq) + varint(valid_until_us) + setpoint + bytes([exit_index])


STOP = bytes([2])


def ping(nonce):
    return bytes([3]) + varint(nonce)


LATCH = bytes([5])


def release(seq):
    return bytes([6]) + varint(seq)


def cobs(raw):
    out, block = bytearray(), bytearray()
    for b in raw:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def frame(payload):
    raw = bytes([PROTOCOL_VERSION]) + payload
    raw += struct.pack("<I", zlib.crc32(raw) & 0xFFFFFFFF)
    return cobs(raw) + b"\x00"


def records(msgs):
    """firmware_msgs input: [ms to advance][length][postcard] per message."""
    out = bytearray()
    for advance, m in msgs:
        out += bytes([advance, len(m)]) + m
    return bytes(out)


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    session = [
        arm(1),
        drive(2, 150_000, 0.3, 0.2),
        drive(3, 200_000, 0.5, -0.4),
        ping(7),
        drive(4, 260_000, 0.2, 0.0, twist=False),
        STOP,
        arm(5),
        drive(6, 400_000, 0.4, 0.1),
        LATCH,
        arm(7),
        drive(8, 500_000, 0.4, 0.1),
        release(9),
        arm(10),
        drive(11, 700_000, 0.3, 0.0),
    ]
    for k, m in enumerate(session):
        write("decode", f"msg-{k:02}", frame(m))
    write("firmware_rx", "session", b"".join(frame(m) for m in session))
    write("firmware_rx", "noise-then-session", b"\x13\x37\x00\xff" + b"".join(frame(m) for m in session[:4]))
    write("firmware_msgs", "session", records([(20, m) for m in session]))
    write("firmware_msgs", "latched", records([(1, arm(1)), (5, drive(2, 100_000, 0.5, 0.0)), (1, LATCH),
                                               (20, arm(3)), (20, drive(4, 200_000, 0.5, 0.0)), (5, STOP),
                                               (5, release(5)), (1, arm(6)), (30, drive(7, 400_000, 0.5, 0.0))]))
    write("firmware_msgs", "timeout", records([(1, arm(1)), (250, drive(2, 300_000, 1.5, 3.0)), (255, ping(1))]))


if __name__ == "__main__":
    main()
