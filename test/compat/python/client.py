#!/usr/bin/python3
"""An independent client for the agent, written against the .proto files only.

Usage: /usr/bin/python3 client.py ADDR STUBS_DIR SPEC_JSON_FILE

ADDR is unix:///PATH (as the agent announces it) or unix:PATH. STUBS_DIR holds
the modules protoc + grpc_python_plugin generated from proto/ (agent/...).
SPEC_JSON_FILE is an OCI spec whose init process echoes a greeting, reads one
line from stdin, echoes it back and exits 4.

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


def main():
    global STEP
    if len(sys.argv) != 4:
        fail("usage: client.py ADDR STUBS_DIR SPEC_JSON_FILE")
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
