// The VMs this console may act on (/api/vms), the one the live session is
// bound to (its verbs and its agent act there), and that VM's state as last
// probed (lib/api.js probeVm, off the record).

import { listVms, probeVm } from '../lib/api.js';

const UNKNOWN = { state: 'unknown', detail: '', at: null, checking: false };

export const vms = $state({
  list: [], // [{name, vmid, node, default, shell, busy}]; empty: an older gateway's one VM
  name: '', // the live session's VM
  probe: { ...UNKNOWN },
});

/** The VM name to show and to address: none while there is only one. */
export const shownVm = () => (vms.list.length > 1 ? vms.name : '');

export async function loadVms() {
  try {
    const listed = (await listVms()).body?.vms;
    if (Array.isArray(listed) && listed.length) {
      vms.list = listed;
      if (!listed.some((v) => v.name === vms.name)) vms.name = (listed.find((v) => v.default) || listed[0]).name;
    }
  } catch {
    vms.list = []; // an older gateway: the one VM of /api/pve
  }
}

/** Probe the VM; an answer about a VM no longer chosen is dropped. */
export async function checkVm() {
  const name = shownVm() || undefined;
  vms.probe = { ...vms.probe, checking: true };
  const probed = await probeVm(name);
  if ((shownVm() || undefined) === name) vms.probe = { ...probed, checking: false };
}

/** Another VM chosen: its state is unknown until probed. */
export function chooseVmName(name) {
  vms.name = name;
  vms.probe = { ...UNKNOWN };
}
