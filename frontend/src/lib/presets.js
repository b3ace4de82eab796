// One-tap diagnosis presets for the failure modes the devvm really has.
export const PRESETS = [
  {
    id: 'triage',
    label: 'Triage',
    hint: 'Reachable? Load, memory, disk, failed units',
    prompt:
      'The devvm looks wedged. Triage it, read-only first: can you reach it over SSH; uptime and load; ' +
      'memory and swap; disk and inode usage; failed systemd units; anything alarming in the last 15 minutes ' +
      'of the journal and dmesg. Then give me the most likely cause and what you would do next. ' +
      'Do not change anything without telling me first.',
  },
  {
    id: 'memory',
    label: 'Memory / OOM',
    hint: 'OOM kills, top memory users, swap',
    prompt:
      'Check the devvm for memory pressure and OOM kills: free -m, swap usage, the top 10 processes by RSS, ' +
      'and oom-kill / "Out of memory" lines in dmesg and the journal since the last boot. ' +
      'What was killed, when, and why? Suggest a fix, but do not kill anything yet.',
  },
  {
    id: 'disk',
    label: 'Disk full',
    hint: 'df, inodes, biggest directories',
    prompt:
      'Check whether a filesystem on the devvm is full: df -h and df -i, the biggest directories under /var, ' +
      '/home, /tmp and /root (du, one level at a time), journal and docker usage. Tell me what is safe to ' +
      'delete and how much it frees, but do not delete anything yet.',
  },
  {
    id: 'services',
    label: 'Failed services',
    hint: 'systemctl --failed with their logs',
    prompt:
      'List the failed systemd units on the devvm (systemctl --failed), and for each show its status, ' +
      'the last 30 journal lines and the likely cause. Do not restart anything yet.',
  },
  {
    id: 'qemu',
    label: 'QEMU wedged',
    hint: 'No SSH? Status, forensics, cycle?',
    prompt:
      'The devvm may be stuck at the QEMU level (no SSH, no ping, or disk I/O stalled). Check what you can ' +
      'still reach, then run the status and forensics power verbs and tell me whether a cycle (stop + start, ' +
      'a fresh QEMU process) is warranted rather than a reset.',
  },
];
