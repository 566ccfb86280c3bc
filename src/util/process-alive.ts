/**
 * Whether a process with this pid exists (signal 0). EPERM means it does, under another user. Pid reuse is
 * not told apart here: a file that names a process carries its start time too (process-start.ts).
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
