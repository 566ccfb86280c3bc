/**
 * Waits for `work` to settle, but at most `ms`: true when it did, false when time ran out (it goes on, unwaited).
 * For a stop's last database calls, which a database that hangs would hold past the service's grace. Never rejects.
 */
export async function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    work.then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return settled;
}
