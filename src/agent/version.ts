// The agent's own version and the protocol versions it serves. The build
// stamps AGENT_BUILD (git commit) through esbuild's `define`.
declare const AGENT_BUILD: string | undefined;

export const AGENT_VERSION = '0.5.0';
export const agentBuild = (): string => (typeof AGENT_BUILD === 'string' ? AGENT_BUILD : 'dev');

/** Every protocol version this agent serves, lowest first. */
export const PROTOCOL_VERSIONS = ['v1', 'v2'] as const;
export type ProtocolVersion = (typeof PROTOCOL_VERSIONS)[number];
