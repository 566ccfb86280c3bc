/** Where an outcome happened, for a worker of several countries and stages (lis_imaged); a daemon's own otherwise. */
export interface OutcomePlace {
  country: string;
  stage: string;
}

/** One count: `country` and `stage` set only when added with a place. */
export interface OutcomeCount {
  datasourceId: number;
  errorClass: string;
  n: number;
  country?: string;
  stage?: string;
}

/** Counts outcomes per (datasource, error class) between heartbeats; '' is the class of rows done. */
export class OutcomeTally {
  private counts = new Map<string, number>();

  add(datasourceId: number, errorClass: string, place?: OutcomePlace): void {
    const key = [datasourceId, errorClass, place?.country ?? '', place?.stage ?? ''].join('\t');
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Everything counted so far, and a fresh start. */
  take(): OutcomeCount[] {
    const rows = [...this.counts].map(([key, n]) => {
      const [ds, errorClass, country, stage] = key.split('\t');
      return { datasourceId: Number(ds), errorClass, n, ...(country ? { country, stage } : {}) };
    });
    this.counts = new Map();
    return rows;
  }

  /** Puts back what could not be written. */
  restore(rows: OutcomeCount[]): void {
    for (const r of rows) {
      const key = [r.datasourceId, r.errorClass, r.country ?? '', r.stage ?? ''].join('\t');
      this.counts.set(key, (this.counts.get(key) ?? 0) + r.n);
    }
  }
}
