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
  }[];
}
