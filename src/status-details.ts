// Machine-readable error reasons, the way gRPC carries them: the trailer
// grpc-status-details-bin holds a google.rpc.Status whose details hold one
// google.rpc.ErrorInfo { reason, domain, metadata }. Shared by the agent
// (v2 handlers attach it) and the client (which reads it); any gRPC stack
// that knows google.rpc.Status reads it too. The three messages are small
// and their field numbers fixed by Google's published schema, so they are
// written and read here directly instead of shipping their .proto files.
import protobuf from 'protobufjs';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';
/** The ErrorInfo domain of every reason this agent gives. */
export const ERROR_DOMAIN = 'agent';

export interface ErrorReason {
  /** UPPER_SNAKE_CASE, e.g. "NOT_FOUND", "OUT_OF_RANGE", "POLICY_DENIED", "REQUEST_ID_REUSED". */
  reason: string;
  metadata: Record<string, string>;
}

/** google.rpc.Status { code, message, details: [Any(ErrorInfo)] } as bytes. */
export function encodeStatusDetails(code: number, message: string, info: ErrorReason): Buffer {
  const errorInfo = protobuf.Writer.create();
  errorInfo.uint32(10).string(info.reason).uint32(18).string(ERROR_DOMAIN);
  for (const [k, v] of Object.entries(info.metadata)) {
    errorInfo.uint32(26).fork().uint32(10).string(k).uint32(18).string(v).ldelim();
  }
  const status = protobuf.Writer.create();
  status.uint32(8).int32(code).uint32(18).string(message);
  status.uint32(26).fork().uint32(10).string(ERROR_INFO_TYPE).uint32(18).bytes(errorInfo.finish()).ldelim();
  return Buffer.from(status.finish());
}

/** The ErrorInfo inside a grpc-status-details-bin value, or null if there is none (or it does not parse). */
export function decodeStatusDetails(bytes: Uint8Array): (ErrorReason & { domain: string; code: number; message: string }) | null {
  try {
    const r = protobuf.Reader.create(bytes);
    let code = 0;
    let message = '';
    let info: (ErrorReason & { domain: string }) | null = null;
    while (r.pos < r.len) {
      const tag = r.uint32();
      if (tag === 8) code = r.int32();
      else if (tag === 18) message = r.string();
      else if (tag === 26) {
        const any = protobuf.Reader.create(r.bytes());
        let type = '';
        let value: Uint8Array = new Uint8Array();
        while (any.pos < any.len) {
          const t = any.uint32();
          if (t === 10) type = any.string();
          else if (t === 18) value = any.bytes();
          else any.skipType(t & 7);
        }
        if (type === ERROR_INFO_TYPE && !info) info = decodeErrorInfo(value);
      } else r.skipType(tag & 7);
    }
    return info && { ...info, code, message };
  } catch {
    return null;
  }
}

function decodeErrorInfo(bytes: Uint8Array): ErrorReason & { domain: string } {
  const r = protobuf.Reader.create(bytes);
  const out = { reason: '', domain: '', metadata: {} as Record<string, string> };
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag === 10) out.reason = r.string();
    else if (tag === 18) out.domain = r.string();
    else if (tag === 26) {
      const e = protobuf.Reader.create(r.bytes());
      let k = '';
      let v = '';
      while (e.pos < e.len) {
        const t = e.uint32();
        if (t === 10) k = e.string();
        else if (t === 18) v = e.string();
        else e.skipType(t & 7);
      }
      out.metadata[k] = v;
    } else r.skipType(tag & 7);
  }
  return out;
}
