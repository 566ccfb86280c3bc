/** A WebAssembly module's instance and its memory, from the base64 that scripts/build-wasm.ts writes. */
export interface WasmInstance<E> {
  memory: WebAssembly.Memory;
  exports: E;
}

const PAGE = 65_536;

/**
 * The module, compiled and instantiated once per process, on first use: synchronously (ours are a few KB, and
 * Node compiles them in well under a millisecond). The module must export its memory as `memory`.
 */
export function lazyWasm<E>(base64: string): () => WasmInstance<E> {
  let instance: WasmInstance<E> | null = null;
  return () => {
    if (instance) return instance;
    const exports = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(base64, 'base64'))).exports as unknown as E & { memory: WebAssembly.Memory };
    instance = { memory: exports.memory, exports };
    return instance;
  };
}

/** Grows `memory` to at least `bytes` (it never shrinks: a thumbnailer's largest preset sets its size). */
export function ensureMemory(memory: WebAssembly.Memory, bytes: number): void {
  if (memory.buffer.byteLength < bytes) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / PAGE));
}
