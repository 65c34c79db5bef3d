// JSON carried in string fields (oci_spec_json, oci_process_json,
// resources_json): every protocol version sends OCI objects this way, and
// parsing them is the wire's business, not the core's.
import { invalidArgument } from '../agent/errors';

/** The parsed value of a JSON string field named `field`; INVALID_ARGUMENT if it does not parse. */
export function parseJsonField(field: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${field} is not valid JSON: ${(err as Error).message}`);
  }
}
