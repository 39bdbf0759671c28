"""An independent ROS 2-side check: subscribes to `cmd_vel` with the Python
eclipse-zenoh client, decodes each payload as a CDR geometry_msgs/Twist the
way zenoh-bridge-ros2dds hands it to ROS 2, and prints one JSON line per
message. Exits after --count messages or --timeout seconds.

    python cmd_vel_listener.py --connect tcp/127.0.0.1:7447 --count 20
"""

import argparse
import json
import struct
import sys
import threading
import time

import zenoh


def decode_twist(payload: bytes):
    if len(payload) != 52:
        raise ValueError(f"Twist CDR is 52 bytes, got {len(payload)}")
    header = payload[:4]
    if header[:2] == b"\x00\x01":
        fmt = "<6d"
    elif header[:2] == b"\x00\x00":
        fmt = ">6d"
    else:
        raise ValueError(f"not a CDR encapsulation header: {header.hex()}")
    lx, ly, lz, ax, ay, az = struct.unpack(fmt, payload[4:])
    return {"linear": [lx, ly, lz], "angular": [ax, ay, az], "header": header.hex()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True)
    p.add_argument("--key", default="cmd_vel")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()

    conf = zenoh.Config()
    conf.insert_json5("mode", '"client"')
    conf.insert_json5("connect/endpoints", json.dumps([a.connect]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    done = threading.Event()
    seen = [0]

    def on_sample(sample):
        try:
            msg = decode_twist(bytes(sample.payload.to_bytes()))
            msg["key"] = str(sample.key_expr)
        except ValueError as e:
            msg = {"error": str(e)}
        print(json.dumps(msg), flush=True)
        seen[0] += 1
        if seen[0] >= a.count:
            done.set()

    # The runtime may still be loading its engines: retry until it listens.
    deadline = time.monotonic() + a.timeout
    while True:
        try:
            session = zenoh.open(conf)
            break
        except zenoh.ZError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with session:
        sub = session.declare_subscriber(a.key, on_sample)
        print(json.dumps({"ready": True}), flush=True)
        ok = done.wait(a.timeout)
        sub.undeclare()
    if not ok:
        print(f"only {seen[0]} of {a.count} messages in {a.timeout} s", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
