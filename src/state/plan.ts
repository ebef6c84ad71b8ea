/**
 * Where each virtual service and server of a config lives in shared memory. Computed by the
 * primary (primary/slots.ts) and sent to the threads with the config, so both sides index
 * the same slots. Pure data.
 */
export interface SlotPlan {
  /** Per virtual service, in config order. */
  vs: {
    slot: number;
    servers: number[];
    /** Slot of the `fallback.server`, when the service has one. */
    fallbackSlot?: number;
    tlsFingerprint?: string;
    /**
     * Per server (same order as `servers`): digest of its backend TLS settings and files'
     * contents. Threads keep a server's pooled connections across a reload only while it is
     * unchanged, so a CA, certificate or key rotated in place reaches new connections.
     */
    backendTls?: (string | undefined)[];
    /** The fallback body_file's bytes, read once by the primary: threads never read the file. */
    fallbackBody?: Uint8Array;
    /** persistence: cookie: each server's opaque cookie token (same order as `servers`), made by the primary. */
    cookieTokens?: string[];
  }[];
}
