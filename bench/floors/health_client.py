# An independent client for bench/footprint.ts: Python's grpcio (Debian's
# python3-grpcio), N sequential grpc.health.v1 Checks on a unix socket,
# printing the latencies in microseconds as one JSON line.
# Usage: /usr/bin/python3 health_client.py SOCKET N WARMUP
import json, sys, time
import grpc

sock, n, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with grpc.insecure_channel(f"unix:{sock}") as channel:
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
    for _ in range(warmup):
        check(b"", timeout=10)
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        check(b"", timeout=10)
        out.append((time.perf_counter_ns() - t0) / 1000)
print(json.dumps(out))
