/**
 * Flow export: records as JSON lines in a file, rotated by size.
 *
 *   FlowRecord --allow/deny FlowFilterSet--> buffer --flush--> flows.json
 *                                  when flows.json would exceed maxSizeBytes:
 *                                  flows.json -> flows.json.1 -> ... -> flows.json.<maxBackups> (dropped)
 *
 * The line format is the `-o json` one: Hubble's protojson of a
 * GetFlowsResponse (hubble/json.ts), so Hubble's tools and `membrane observe
 * --input flows.json` read exports back. lost_events records always pass
 * the filter: a gap must stay visible.
 *
 * Durability (the `fsync` setting):
 *   - "rotate" (default): write(2) at every flush (an agent crash loses at
 *     most the unflushed buffer, flushed every `flushIntervalMs` or 64 KiB);
 *     fsync when a file is rotated away and on close. A host crash may lose
 *     what the page cache held of the current file.
 *   - "always": fsync after every flush (slow; for audit trails).
 *   - "never": no fsync at all.
 *
 * Flows carry no HTTP header values (flow.ts), and the exporter drops a
 * `headers` field should one appear (hubble/json.ts), so secrets in headers never reach disk.
 * Write errors are counted and reported through onError, never thrown into
 * the flow path.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { MembraneError } from "../errors.js";
import { isFlowRecord, type Flow, type FlowRecord } from "./flow.js";
import { hubbleJsonLine } from "./hubble/json.js";
import { compileFilter, type FlowFilterSet } from "./filter.js";

export interface FlowExporterParams {
  path: string;
  /** Rotate before the file would grow past this. Default 10 MiB. */
  maxSizeBytes?: number;
  /** Rotated files kept (path.1 newest .. path.N oldest). Default 5; 0 = truncate instead. */
  maxBackups?: number;
  filter?: FlowFilterSet;
  fsync?: "rotate" | "always" | "never";
  /** Buffered lines are written at least this often. Default 1000 ms. */
  flushIntervalMs?: number;
  onError?: (e: MembraneError) => void;
}

export interface ExportStats {
  written: number;
  filtered: number;
  rotations: number;
  errors: number;
}

const FLUSH_BYTES = 64 * 1024;

export class FlowExporter {
  private readonly p: Required<Omit<FlowExporterParams, "filter" | "onError">> & FlowExporterParams;
  private readonly pass: (f: Flow) => boolean;
  private fd: number | undefined;
  private size = 0;
  private buf: string[] = [];
  private bufBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly st: ExportStats = { written: 0, filtered: 0, rotations: 0, errors: 0 };

  constructor(params: FlowExporterParams) {
    this.p = { maxSizeBytes: 10 << 20, maxBackups: 5, fsync: "rotate", flushIntervalMs: 1000, ...params };
    if (this.p.maxSizeBytes < 1024)
      throw new MembraneError(
        "FLOW_EXPORT_FAILED",
        `Cannot export flows to ${params.path}: maxSizeBytes ${this.p.maxSizeBytes} is below 1024`,
        {
          hint: "Give a file size of at least 1 KiB.",
        },
      );
    this.pass = compileFilter(params.filter ?? {});
  }

  stats(): ExportStats {
    return { ...this.st };
  }

  /** Opens (appends to) the file and starts the flush timer. */
  start(): void {
    try {
      this.fd = openSync(this.p.path, "a", 0o600);
      this.size = statSync(this.p.path).size;
    } catch (e) {
      throw new MembraneError(
        "FLOW_EXPORT_FAILED",
        `Cannot export flows to ${this.p.path}: ${(e as Error).message}`,
        {
          hint: "Check that the directory exists and the agent may write to it.",
          cause: e,
        },
      );
    }
    this.timer = setInterval(() => this.flush(), this.p.flushIntervalMs);
    this.timer.unref();
  }

  /** Queues one record (if the filter lets it through); never throws. */
  write(r: FlowRecord): void {
    if (isFlowRecord(r) && !this.pass(r.flow)) {
      this.st.filtered++;
      return;
    }
    const line = hubbleJsonLine(r) + "\n";
    this.buf.push(line);
    this.bufBytes += Buffer.byteLength(line);
    this.st.written++;
    if (this.bufBytes >= FLUSH_BYTES) this.flush();
  }

  private fail(e: unknown): void {
    this.st.errors++;
    this.p.onError?.(
      new MembraneError(
        "FLOW_EXPORT_FAILED",
        `Cannot export flows to ${this.p.path}: ${(e as Error).message}`,
        {
          hint: "Check free disk space and permissions; export resumes on the next flush.",
          cause: e,
        },
      ),
    );
  }

  private rotate(): void {
    if (this.fd === undefined) return;
    if (this.p.fsync !== "never") fsyncSync(this.fd);
    closeSync(this.fd);
    const { path, maxBackups } = this.p;
    if (maxBackups === 0) rmSync(path, { force: true });
    else {
      rmSync(`${path}.${maxBackups}`, { force: true });
      for (let i = maxBackups - 1; i >= 1; i--) {
        try {
          renameSync(`${path}.${i}`, `${path}.${i + 1}`);
        } catch {
          // that backup does not exist yet
        }
      }
      renameSync(path, `${path}.1`);
    }
    this.fd = openSync(path, "a", 0o600);
    this.size = 0;
    this.st.rotations++;
  }

  /** Writes the buffered lines now, rotating as needed. */
  flush(): void {
    if (this.fd === undefined || this.buf.length === 0) return;
    const lines = this.buf;
    this.buf = [];
    this.bufBytes = 0;
    try {
      let chunk: string[] = [];
      let chunkBytes = 0;
      const emit = (): void => {
        if (chunk.length === 0 || this.fd === undefined) return;
        const data = Buffer.from(chunk.join(""));
        writeSync(this.fd, data);
        this.size += data.length;
        chunk = [];
        chunkBytes = 0;
      };
      for (const line of lines) {
        const n = Buffer.byteLength(line);
        if (this.size + chunkBytes + n > this.p.maxSizeBytes && this.size + chunkBytes > 0) {
          emit();
          this.rotate();
        }
        chunk.push(line);
        chunkBytes += n;
      }
      emit();
      if (this.p.fsync === "always" && this.fd !== undefined) fsyncSync(this.fd);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Flushes, fsyncs (unless fsync is "never") and closes. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.flush();
    if (this.fd === undefined) return;
    try {
      if (this.p.fsync !== "never") fsyncSync(this.fd);
      closeSync(this.fd);
    } catch (e) {
      this.fail(e);
    }
    this.fd = undefined;
  }
}
