// v2 guest RPCs: thin translators to the guest module (agent/guest). OOM
// kills reach v2 clients as WatchEvents events (no GetOOMEvent).
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { copyFileFromWire, guestDetailsToWire } from '../common-wire';
import { mutatingCalls } from './requests';

type Group = 'GetGuestDetails' | 'SetGuestDateTime' | 'OnlineCPUMem' | 'ReseedRandomDev' | 'CopyFile' | 'GetMetrics';

export function guestHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { guest } = core;
  const once = mutatingCalls(core, rpc);
  return {
    GetGuestDetails: rpc.unary(async (req) =>
      guestDetailsToWire(await guest.details({ memBlockSize: req.mem_block_size, memHotplugProbe: req.mem_hotplug_probe }))),
    SetGuestDateTime: once('SetGuestDateTime', (req) => {
      guest.setDateTime(req.sec, req.usec);
      return {};
    }),
    OnlineCPUMem: once('OnlineCPUMem', async (req, ctx) => {
      await guest.onlineCpuMem({ wait: req.wait, nbCpus: req.nb_cpus, cpuOnly: req.cpu_only }, ctx.signal);
      return {};
    }),
    ReseedRandomDev: once('ReseedRandomDev', async (req) => {
      await guest.reseedRandom(req.data);
      return {};
    }),
    CopyFile: once('CopyFile', async (req) => {
      await guest.copyFile(copyFileFromWire(req));
      return {};
    }),
    GetMetrics: rpc.unary(async () => ({ metrics: await guest.metrics(core.callMetrics) })),
  } satisfies Pick<AgentV2Handlers, Group>;
}
