import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { reapplyGrpcEnvironment } from './grpc-environment';

test('a start from the snapshot names the grpc-js variables it cannot apply, and applies the verbosity', () => {
  assert.deepEqual(reapplyGrpcEnvironment({}), []);
  assert.deepEqual(reapplyGrpcEnvironment({ GRPC_VERBOSITY: 'error', GRPC_TRACE: 'all', GRPC_NODE_DEBUG_SEND_ERROR_DETAILS: 'true' }), ['GRPC_TRACE', 'GRPC_NODE_DEBUG_SEND_ERROR_DETAILS']);
  // DEBUG verbosity makes grpc-js log at debug severity; restored after.
  const lines: unknown[][] = [];
  grpc.setLogger({ error: (...a: unknown[]) => lines.push(a) } as unknown as Console);
  try {
    reapplyGrpcEnvironment({ GRPC_NODE_VERBOSITY: 'debug' });
    grpc.experimental.log(grpc.logVerbosity.DEBUG, 'seen');
    reapplyGrpcEnvironment({ GRPC_VERBOSITY: 'error' });
    grpc.experimental.log(grpc.logVerbosity.DEBUG, 'not seen');
  } finally {
    grpc.setLogger(console);
  }
  assert.equal(lines.length, 1);
  assert.match(String(lines[0]), /seen/);
});
