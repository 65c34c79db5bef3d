// grpc-js reads its environment variables once, when it loads. In the single
// executable that happened when the startup snapshot was built (build/sea.mjs),
// so a start from the snapshot applies them again where grpc-js lets it.
import * as grpc from '@grpc/grpc-js';

const VERBOSITY: Record<string, grpc.logVerbosity> = {
  DEBUG: grpc.logVerbosity.DEBUG,
  INFO: grpc.logVerbosity.INFO,
  ERROR: grpc.logVerbosity.ERROR,
  NONE: grpc.logVerbosity.NONE,
};

/** Variables grpc-js only reads at load, so a start from the snapshot cannot honour them. */
const READ_AT_LOAD_ONLY = ['GRPC_NODE_TRACE', 'GRPC_TRACE', 'GRPC_NODE_USE_ALTERNATIVE_RESOLVER', 'GRPC_NODE_DEBUG_SEND_ERROR_DETAILS'];

/** Applies GRPC_(NODE_)VERBOSITY; returns the set variables it could not apply. */
export function reapplyGrpcEnvironment(env: NodeJS.ProcessEnv = process.env): string[] {
  const verbosity = VERBOSITY[(env.GRPC_NODE_VERBOSITY ?? env.GRPC_VERBOSITY ?? '').toUpperCase()];
  if (verbosity !== undefined) grpc.setLogVerbosity(verbosity);
  return READ_AT_LOAD_ONLY.filter((name) => env[name] !== undefined);
}
