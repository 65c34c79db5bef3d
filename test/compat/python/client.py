#!/usr/bin/python3
"""An independent client for the agent, written against the .proto files only.

Usage: /usr/bin/python3 client.py ADDR STUBS_DIR SPEC_JSON_FILE
       /usr/bin/python3 client.py --golden GOLDEN_DIR STUBS_DIR

ADDR is unix:///PATH (as the agent announces it) or unix:PATH. STUBS_DIR holds
the modules protoc + grpc_python_plugin generated from proto/ (agent/...,
agent/v1/..., agent/v2/...). SPEC_JSON_FILE is an OCI spec whose init process
echoes a greeting, reads one line from stdin, echoes it back and exits 4.

The first form runs a v1 lifecycle, then a v2 one on the same channel:
ReadOutput streamed from offsets, WriteInput at offsets (a retry applied
once), WatchEvents from a cursor, structured exit statuses, ListContainers and
GetContainer, and errors whose grpc-status-details-bin trailer is decoded by
hand as google.rpc.Status { code = 1; message = 2; repeated Any details = 3 }
with Any { type_url = 1; value = 2 } and google.rpc.ErrorInfo { reason = 1;
domain = 2; map<string, string> metadata = 3 } (Debian's python3-protobuf has
no google.rpc; python3-googleapis-common-protos would, and is not needed).

The --golden form decodes every golden encoding in GOLDEN_DIR (an archived
release's golden/, build/golden.mjs) with the stubs, re-serializes it, and
compares the bytes and the JSON (MessageToDict with the .proto field names).

Uses only Debian's python3-grpcio and python3-protobuf. Prints one JSON object
on stdout; on a failed step it prints {"ok": false, "step": ..., "error": ...}
and exits 1.
"""

import json
import sys
import time
import traceback

STEP = "start"


SUMMARY = {}


def fail(message):
    print(json.dumps({"ok": False, "step": STEP, "error": message, "cleanup_errors": SUMMARY.get("cleanup_errors", [])}))
    sys.exit(1)


try:
    import grpc
except ImportError as err:  # the Node side names the Debian package
    print(json.dumps({"ok": False, "step": "import", "error": "python3-grpcio missing: %s" % err}))
    sys.exit(3)


def cleanup(summary, what, fn):
    """Runs a clean-up call without hiding the step that failed first."""
    try:
        fn()
        return True
    except grpc.RpcError as err:
        summary.setdefault("cleanup_errors", []).append("%s: %s %s" % (what, err.code().name, err.details()))
        return False


def target_of(addr):
    if addr.startswith("unix://"):
        return "unix:" + addr[len("unix://"):]
    return addr


# ---- google.rpc.Status by hand (field numbers from Google's published schema) ----

def read_varint(buf, pos):
    shift = 0
    result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def read_fields(buf):
    """Yields (field_number, wire_type, value) of one message: ints for varints, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field %d" % number)
            value = bytes(buf[pos:pos + n])
            pos += n
        elif wire == 1:
            value = bytes(buf[pos:pos + 8])
            pos += 8
        elif wire == 5:
            value = bytes(buf[pos:pos + 4])
            pos += 4
        else:
            raise ValueError("wire type %d" % wire)
        yield number, wire, value


def decode_status_details(raw):
    """google.rpc.Status with its ErrorInfo details, as a dict."""
    out = {"code": 0, "message": "", "details": []}
    for number, wire, value in read_fields(raw):
        if number == 1 and wire == 0:
            out["code"] = value
        elif number == 2 and wire == 2:
            out["message"] = value.decode("utf-8")
        elif number == 3 and wire == 2:
            any_msg = {"type_url": "", "value": b""}
            for n2, w2, v2 in read_fields(value):
                if n2 == 1 and w2 == 2:
                    any_msg["type_url"] = v2.decode("utf-8")
                elif n2 == 2 and w2 == 2:
                    any_msg["value"] = v2
            detail = {"type_url": any_msg["type_url"]}
            if any_msg["type_url"] == "type.googleapis.com/google.rpc.ErrorInfo":
                info = {"reason": "", "domain": "", "metadata": {}}
                for n3, w3, v3 in read_fields(any_msg["value"]):
                    if n3 == 1 and w3 == 2:
                        info["reason"] = v3.decode("utf-8")
                    elif n3 == 2 and w3 == 2:
                        info["domain"] = v3.decode("utf-8")
                    elif n3 == 3 and w3 == 2:
                        k = v = ""
                        for n4, w4, v4 in read_fields(v3):
                            if n4 == 1 and w4 == 2:
                                k = v4.decode("utf-8")
                            elif n4 == 2 and w4 == 2:
                                v = v4.decode("utf-8")
                        info["metadata"][k] = v
                detail["error_info"] = info
            out["details"].append(detail)
    return out


def error_of(err):
    """A gRPC error as a dict: code, details, and the decoded status details (or None)."""
    entry = {"code": err.code().name, "grpc_code": err.code().value[0], "details": err.details()}
    raw = None
    for k, v in (err.trailing_metadata() or ()):
        if k == "grpc-status-details-bin":
            raw = v
    entry["status_details"] = decode_status_details(raw) if raw is not None else None
    return entry


def expect_error(fn):
    try:
        fn()
    except grpc.RpcError as err:
        return error_of(err)
    fail("the call succeeded; an error was expected")


def v2_lifecycle(channel, spec_json, summary):
    """A v2 lifecycle on the channel the v1 one used."""
    global STEP
    from agent import discovery_pb2, discovery_pb2_grpc
    from agent.v2 import agent_pb2 as v2pb, agent_pb2_grpc as v2grpc

    STEP = "v2 negotiate"
    neg = discovery_pb2_grpc.DiscoveryStub(channel).Negotiate(
        discovery_pb2.NegotiateRequest(client_name="python-compat", client_version="0.0.1", protocol_versions=["v1", "v2"]), timeout=10)
    v2s = {"selected_version": neg.selected_version, "capabilities": list(neg.capabilities)}
    summary["v2"] = v2s
    if neg.selected_version != "v2":
        fail("offering v1 and v2, selected_version is %r" % neg.selected_version)
    try:
        import google.rpc.status_pb2  # noqa: F401
        v2s["google_rpc_status_pb2"] = True
    except ImportError:
        v2s["google_rpc_status_pb2"] = False

    v2 = v2grpc.AgentServiceStub(channel)
    cid = "py2-%d" % (int(time.time() * 1000) % 1000000)
    v2s["container_id"] = cid
    spec = json.loads(spec_json)
    spec["process"]["args"] = ["sh", "-c", "echo v2-hello; read line; echo got:$line; echo v2-err >&2; exit 6"]

    STEP = "v2 WatchEvents (open, from the start)"
    events = v2.WatchEvents(v2pb.WatchEventsRequest(after_seq=0), timeout=60)

    STEP = "v2 CreateContainer"
    created = v2.CreateContainer(v2pb.CreateContainerRequest(container_id=cid, exec_id="init2", oci_spec_json=json.dumps(spec), request_id="py-create-1"), timeout=30)
    again = v2.CreateContainer(v2pb.CreateContainerRequest(container_id=cid, exec_id="init2", oci_spec_json=json.dumps(spec), request_id="py-create-1"), timeout=30)
    v2s["created"] = {"state": v2pb.ContainerState.Name(created.container.state), "init": created.container.init.exec_id,
                      "retry_same": created.container.created_at_unix_ms == again.container.created_at_unix_ms}
    try:
        STEP = "v2 StartContainer"
        v2.StartContainer(v2pb.StartContainerRequest(container_id=cid, request_id="py-start-1"), timeout=30)

        STEP = "v2 WriteInput"
        w = v2pb.WriteInputRequest(container_id=cid, exec_id="init2", offset=0, data=b"line-v2\n", close=True, request_id="py-write-1")
        v2s["write_offsets"] = [v2.WriteInput(w, timeout=10).offset, v2.WriteInput(w, timeout=10).offset]

        def read_output(stream, offset, max_chunk=0):
            msgs = []
            for m in v2.ReadOutput(v2pb.ReadOutputRequest(container_id=cid, exec_id="init2", stream=stream, offset=offset, max_chunk_bytes=max_chunk), timeout=30):
                msgs.append((m.offset, m.data, m.eof))
                if m.eof:
                    break
            contiguous = all(msgs[i][0] == msgs[i - 1][0] + len(msgs[i - 1][1]) for i in range(1, len(msgs)))
            return {"text": b"".join(d for _, d, _ in msgs).decode("utf-8", "replace"), "first_offset": msgs[0][0] if msgs else None,
                    "final_offset": msgs[-1][0] + len(msgs[-1][1]) if msgs else None, "eof": bool(msgs and msgs[-1][2]),
                    "messages": len(msgs), "contiguous": contiguous}

        STEP = "v2 ReadOutput stdout from 0 (4-byte chunks)"
        v2s["stdout"] = read_output(v2pb.OUTPUT_STREAM_STDOUT, 0, 4)
        STEP = "v2 ReadOutput stdout from 3"
        v2s["stdout_from_3"] = read_output(v2pb.OUTPUT_STREAM_STDOUT, 3)
        STEP = "v2 ReadOutput stderr"
        v2s["stderr"] = read_output(v2pb.OUTPUT_STREAM_STDERR, 0)

        STEP = "v2 WaitProcess"
        st = v2.WaitProcess(v2pb.WaitProcessRequest(container_id=cid, exec_id="init2"), timeout=30).status
        v2s["status"] = {"code": st.code, "signal": st.signal, "core_dumped": st.core_dumped, "oom_killed": st.oom_killed,
                         "times_ordered": 0 < st.started_at_unix_ms <= st.exited_at_unix_ms}

        STEP = "v2 WatchEvents (until the init's exit)"
        seen = []
        for e in events:
            kind = e.WhichOneof("event")
            item = {"seq": e.seq, "kind": kind}
            if kind == "process_exited":
                item.update({"exec_id": e.process_exited.exec_id, "code": e.process_exited.status.code})
            elif kind == "process_started":
                item.update({"exec_id": e.process_started.exec_id, "pid": e.process_started.pid})
            elif kind == "container_state":
                item.update({"container": e.container_state.container_id, "state": v2pb.ContainerState.Name(e.container_state.state)})
            seen.append(item)
            if kind == "process_exited" and e.process_exited.container_id == cid and e.process_exited.exec_id == "init2":
                break
        events.cancel()
        v2s["events"] = seen
        STEP = "v2 WatchEvents (from a cursor)"
        exit_seq = seen[-1]["seq"]
        resumed = v2.WatchEvents(v2pb.WatchEventsRequest(after_seq=exit_seq - 1), timeout=30)
        first = next(iter(resumed))
        resumed.cancel()
        v2s["resumed_first"] = {"seq": first.seq, "kind": first.WhichOneof("event")}

        STEP = "v2 ListContainers / GetContainer"
        listed = [c.container_id for c in v2.ListContainers(v2pb.ListContainersRequest(), timeout=10).containers]
        got = v2.GetContainer(v2pb.GetContainerRequest(container_id=cid), timeout=10).container
        v2s["listed"] = cid in listed
        v2s["get"] = {"state": v2pb.ContainerState.Name(got.state), "init_exit_code": got.init.exit_status.code,
                      "stdin_offset": got.init.stdin_offset, "stdout_end": got.init.stdout.end_offset}

        STEP = "v2 errors"
        v2s["errors"] = {
            "not_found": expect_error(lambda: v2.GetContainer(v2pb.GetContainerRequest(container_id="no-such-container"), timeout=10)),
            "request_id_reused": expect_error(lambda: v2.CreateContainer(v2pb.CreateContainerRequest(
                container_id=cid + "-other", oci_spec_json=json.dumps(spec), request_id="py-create-1"), timeout=10)),
            "input_gap": expect_error(lambda: v2.WriteInput(v2pb.WriteInputRequest(
                container_id=cid, exec_id="init2", offset=100, data=b"x", request_id="py-write-gap"), timeout=10)),
            "cursor_ahead": expect_error(lambda: next(iter(v2.WatchEvents(v2pb.WatchEventsRequest(after_seq=1000000), timeout=10)))),
        }
        STEP = "v2 ReleaseProcess"
        v2.ReleaseProcess(v2pb.ReleaseProcessRequest(container_id=cid, exec_id="init2", request_id="py-release-1"), timeout=10)
    finally:
        STEP = "v2 RemoveContainer"
        v2.RemoveContainer(v2pb.RemoveContainerRequest(container_id=cid, request_id="py-remove-1"), timeout=30)
    v2s["removed"] = True


def golden(golden_dir, stubs_dir):
    """Every golden encoding, read by Python's protobuf: the same bytes back and the same JSON."""
    global STEP
    import importlib
    sys.path.insert(0, stubs_dir)
    from google.protobuf import json_format

    STEP = "golden index"
    with open(golden_dir + "/index.json") as f:
        index = json.load(f)
    modules = {"agent": "agent.discovery_pb2", "agent.v1": "agent.v1.agent_pb2", "agent.v2": "agent.v2.agent_pb2"}
    problems = []
    checked = 0
    for m in index["messages"]:
        pkg, _, name = m["type"].rpartition(".")
        if pkg not in modules:
            problems.append("%s: no stubs for package %s" % (m["type"], pkg))
            continue
        STEP = "golden " + m["type"] + " " + m["variant"]
        cls = getattr(importlib.import_module(modules[pkg]), name, None)
        if cls is None:
            problems.append("%s: no message %s in today's %s" % (m["type"], name, pkg))
            continue
        with open(golden_dir + "/" + m["bin"], "rb") as f:
            raw = f.read()
        with open(golden_dir + "/" + m["json"]) as f:
            want = json.load(f)
        msg = cls()
        msg.ParseFromString(raw)
        back = msg.SerializeToString(deterministic=True)
        if back != raw:
            problems.append("%s (%s): re-serialized %d bytes, archived %d" % (m["type"], m["variant"], len(back), len(raw)))
        got = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        if got != want:
            problems.append("%s (%s): JSON %s, archived %s" % (m["type"], m["variant"], json.dumps(got)[:300], json.dumps(want)[:300]))
        checked += 1
    print(json.dumps({"ok": True, "checked": checked, "problems": problems, "protobuf_version": __import__("google.protobuf").protobuf.__version__}))


def main():
    global STEP
    if len(sys.argv) == 4 and sys.argv[1] == "--golden":
        golden(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) != 4:
        fail("usage: client.py ADDR STUBS_DIR SPEC_JSON_FILE | --golden GOLDEN_DIR STUBS_DIR")
    addr, stubs_dir, spec_file = sys.argv[1:]
    sys.path.insert(0, stubs_dir)
    from agent import discovery_pb2, discovery_pb2_grpc
    from agent.v1 import agent_pb2, agent_pb2_grpc

    with open(spec_file) as f:
        spec_json = f.read()

    summary = SUMMARY
    summary.update({"ok": False, "grpcio_version": grpc.__version__})
    target = target_of(addr)
    summary["target"] = target

    with grpc.insecure_channel(target) as channel:
        STEP = "connect"
        grpc.channel_ready_future(channel).result(timeout=10)

        STEP = "negotiate"
        discovery = discovery_pb2_grpc.DiscoveryStub(channel)
        neg = discovery.Negotiate(
            discovery_pb2.NegotiateRequest(client_name="python-compat", client_version="0.0.1", protocol_versions=["v1"]),
            timeout=10,
        )
        if neg.selected_version != "v1":
            fail("selected_version is %r, expected 'v1'" % neg.selected_version)
        summary["negotiate"] = {
            "selected_version": neg.selected_version,
            "agent_version": neg.agent_version,
            "protocol_versions": list(neg.protocol_versions),
        }

        v1 = agent_pb2_grpc.AgentServiceStub(channel)
        cid = "py-%d" % (int(time.time() * 1000) % 1000000)
        summary["container_id"] = cid

        STEP = "CreateContainer"
        v1.CreateContainer(agent_pb2.CreateContainerRequest(container_id=cid, exec_id="init", oci_spec_json=spec_json), timeout=30)
        try:
            STEP = "StartContainer"
            v1.StartContainer(agent_pb2.StartContainerRequest(container_id=cid), timeout=30)

            # The init process prints a greeting, then waits for a line.
            STEP = "ReadStdout (greeting)"
            out = b""
            deadline = time.time() + 10
            while b"\n" not in out:
                if time.time() > deadline:
                    fail("no greeting within 10 s; got %r" % out)
                chunk = v1.ReadStdout(agent_pb2.ReadStdoutRequest(container_id=cid, exec_id="init", len=4096), timeout=10).data
                if not chunk:
                    fail("stdout ended before the greeting; got %r" % out)
                out += chunk

            STEP = "WriteStdin"
            payload = b"line-from-python\n"
            written = v1.WriteStdin(agent_pb2.WriteStdinRequest(container_id=cid, exec_id="init", data=payload), timeout=10).len
            summary["stdin_written"] = written
            STEP = "CloseStdin"
            v1.CloseStdin(agent_pb2.CloseStdinRequest(container_id=cid, exec_id="init"), timeout=10)

            STEP = "ReadStdout (to EOF)"
            reads = 0
            while True:
                chunk = v1.ReadStdout(agent_pb2.ReadStdoutRequest(container_id=cid, exec_id="init", len=4096), timeout=10).data
                reads += 1
                if not chunk:
                    break
                out += chunk
                if reads > 1000:
                    fail("stdout did not reach EOF")
            summary["init_stdout"] = out.decode("utf-8", "replace")
            summary["init_stdout_end"] = "empty"

            STEP = "WaitProcess (init)"
            summary["init_status"] = v1.WaitProcess(agent_pb2.WaitProcessRequest(container_id=cid, exec_id=""), timeout=30).status

            # An exec with pipes: the container's init has exited, so start a
            # new container that stays up, then exec into it.
            STEP = "CreateContainer (long-running)"
            spec = json.loads(spec_json)
            spec["process"]["args"] = ["sleep", "1000"]
            cid2 = cid + "-b"
            summary["exec_container_id"] = cid2
            v1.CreateContainer(agent_pb2.CreateContainerRequest(container_id=cid2, exec_id="", oci_spec_json=json.dumps(spec)), timeout=30)
            try:
                v1.StartContainer(agent_pb2.StartContainerRequest(container_id=cid2), timeout=30)

                STEP = "ExecProcess"
                proc = {
                    "terminal": False,
                    "args": ["sh", "-c", "echo exec-out; echo exec-err >&2; cat; exit 7"],
                    "env": ["PATH=/bin"],
                    "cwd": "/",
                    "user": {"uid": 0, "gid": 0},
                }
                v1.ExecProcess(agent_pb2.ExecProcessRequest(container_id=cid2, exec_id="e1", oci_process_json=json.dumps(proc)), timeout=30)
                v1.WriteStdin(agent_pb2.WriteStdinRequest(container_id=cid2, exec_id="e1", data=b"piped\n"), timeout=10)
                v1.CloseStdin(agent_pb2.CloseStdinRequest(container_id=cid2, exec_id="e1"), timeout=10)

                STEP = "WaitProcess (exec)"
                summary["exec_status"] = v1.WaitProcess(agent_pb2.WaitProcessRequest(container_id=cid2, exec_id="e1"), timeout=30).status

                # Reads a stream to its end. The proto says the end is an empty
                # read; an agent that forgets an exited exec as soon as its
                # bytes are handed out answers NOT_FOUND instead. Record which
                # end each stream had (the Node test wants "empty").
                def drain(method, request_type):
                    data = b""
                    for _ in range(1000):
                        try:
                            chunk = method(request_type(container_id=cid2, exec_id="e1", len=4096), timeout=10).data
                        except grpc.RpcError as err:
                            if err.code() == grpc.StatusCode.NOT_FOUND and data:
                                return data.decode("utf-8", "replace"), "not_found"
                            raise
                        if not chunk:
                            return data.decode("utf-8", "replace"), "empty"
                        data += chunk
                    fail("no end of stream after 1000 reads")

                STEP = "ReadStdout (exec)"
                summary["exec_stdout"], summary["exec_stdout_end"] = drain(v1.ReadStdout, agent_pb2.ReadStdoutRequest)
                STEP = "ReadStderr (exec)"
                summary["exec_stderr"], summary["exec_stderr_end"] = drain(v1.ReadStderr, agent_pb2.ReadStderrRequest)
            finally:
                cleanup(summary, "RemoveContainer " + cid2, lambda: v1.RemoveContainer(agent_pb2.RemoveContainerRequest(container_id=cid2), timeout=30))

            STEP = "not-found"
            try:
                v1.WaitProcess(agent_pb2.WaitProcessRequest(container_id="no-such-container", exec_id=""), timeout=10)
                fail("WaitProcess on an unknown container succeeded")
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    fail("expected NOT_FOUND, got %s: %s" % (err.code(), err.details()))
                summary["not_found"] = {"code": err.code().name, "details": err.details()}
        finally:
            summary["removed"] = cleanup(summary, "RemoveContainer " + cid, lambda: v1.RemoveContainer(agent_pb2.RemoveContainerRequest(container_id=cid), timeout=30))
        if summary.get("cleanup_errors"):
            STEP = "RemoveContainer"
            fail("; ".join(summary["cleanup_errors"]))

        STEP = "after remove"
        try:
            v1.StartContainer(agent_pb2.StartContainerRequest(container_id=cid), timeout=10)
            fail("StartContainer after RemoveContainer succeeded")
        except grpc.RpcError as err:
            summary["after_remove_code"] = err.code().name

        # Long invalid ids: the status must stay INVALID_ARGUMENT (an echo of the
        # whole id would pass grpc C-core's 8 KiB metadata limit and arrive as
        # RESOURCE_EXHAUSTED), and the channel must stay usable. Recorded here,
        # judged by the Node side.
        STEP = "long ids"
        summary["long_ids"] = []
        for n in (8 * 1024 + 1, 64 * 1024):
            entry = {"length": n}
            try:
                v1.StartContainer(agent_pb2.StartContainerRequest(container_id="x" * n), timeout=10)
                entry["code"] = "OK"
            except grpc.RpcError as err:
                entry["code"] = err.code().name
                entry["details_length"] = len(err.details() or "")
            try:
                v1.StartContainer(agent_pb2.StartContainerRequest(container_id="no-such-container"), timeout=10)
                entry["next_code"] = "OK"
            except grpc.RpcError as err:
                entry["next_code"] = err.code().name
            summary["long_ids"].append(entry)

        v2_lifecycle(channel, spec_json, summary)

    summary["ok"] = True
    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except grpc.RpcError as err:
        fail("gRPC %s: %s" % (err.code().name, err.details()))
    except Exception:  # noqa: BLE001 - report any failure as JSON
        fail(traceback.format_exc())
