/** Counts outcomes per (datasource, error class) between heartbeats; '' is the class of rows done. */
export class OutcomeTally {
  private counts = new Map<string, number>();

  add(datasourceId: number, errorClass: string): void {
    const key = `${datasourceId}\t${errorClass}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Everything counted so far, and a fresh start. */
  take(): Array<{ datasourceId: number; errorClass: string; n: number }> {
    const rows = [...this.counts].map(([key, n]) => {
      const [ds, errorClass] = key.split('\t');
      return { datasourceId: Number(ds), errorClass, n };
    });
    this.counts = new Map();
    return rows;
  }

  /** Puts back what could not be written. */
  restore(rows: Array<{ datasourceId: number; errorClass: string; n: number }>): void {
    for (const r of rows) {
      const key = `${r.datasourceId}\t${r.errorClass}`;
      this.counts.set(key, (this.counts.get(key) ?? 0) + r.n);
    }
  }
}
