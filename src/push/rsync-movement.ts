/**
 * This pusher's rsyncs running, told to the chunks that wait on them, for the runner's queue.progressTimeoutSeconds:
 * a chunk counts as progressing while one of its rsyncs runs, and while they wait for a turn in push.maxParallel
 * behind rsyncs that run (a chunk's or backfill's). A chunk longer than that bound (a low push.bwLimit, a slow
 * frontend) was taken for wedged and given back while its rsyncs ran on: claimed again and sent again, the work
 * wasted. A running rsync is moving: it ends itself once nothing moves for push.timeoutSeconds (its `--timeout`;
 * `--contimeout`, ssh's ConnectTimeout before), which the config keeps under queue.progressTimeoutSeconds. Not
 * rsync's own progress output (`--info=progress2`): it goes quiet for as long as the bytes already written take
 * to drain (a pipe's 64 KB through a local frontend's bwlimit, a socket's megabytes to a slow frontend).
 * What this cannot tell: an rsync stuck in the kernel (a hung NFS mount) that its --timeout never ends.
 */
export class RsyncMovement {
  private readonly waiting = new Set<() => void>();

  /** An rsync runs (called once a second while it does). */
  moved(): void {
    for (const progressed of [...this.waiting]) progressed();
  }

  /** Until the returned function is called, `progressed` is called whenever moved() is: rsyncs ahead of it run. */
  wait(progressed: () => void): () => void {
    this.waiting.add(progressed);
    return () => this.waiting.delete(progressed);
  }
}
