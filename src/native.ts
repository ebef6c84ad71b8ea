/**
 * Loads uWebSockets.js and refuses its silent pure-JS fallback.
 *
 * The package we use catches a failed load of its native binary, prints a warning and returns
 * a slow implementation built on `ws`. A load balancer running on that would look healthy and
 * be an order of magnitude slower, so carelb checks that the native module is what it got.
 */
import { readFileSync } from 'node:fs';

export type Uws = typeof import('uWebSockets.js');

export class NativeUwsMissing extends Error {
  constructor(detail: string) {
    super(
      `the native uWebSockets.js binding did not load (${detail}); carelb will not run on the slow pure-JS fallback. ` +
        `It needs Node.js 16, 18 or 20 on linux x64/arm64 (this is Node ${process.versions.node}, ABI ${process.versions.modules}, ` +
        `${process.platform}/${process.arch}) and UWS_USE_FALLBACK unset.`,
    );
    this.name = 'NativeUwsMissing';
  }
}

function nativeBindingMapped(): boolean {
  try {
    return readFileSync('/proc/self/maps', 'utf8').includes('/uws_');
  } catch {
    return true; // no /proc: fall back to the function check alone
  }
}

/**
 * Returns the native uWS module or throws NativeUwsMissing. Called by every thread that creates
 * uWS apps (the data-plane threads) before it creates one, and by the CLI as a check.
 */
export function loadNativeUws(): Uws {
  if (process.env.UWS_USE_FALLBACK) throw new NativeUwsMissing(`UWS_USE_FALLBACK=${process.env.UWS_USE_FALLBACK} forces the fallback`);
  // The fallback warns on the console when it kicks in; silence that, we report it ourselves.
  const warn = console.warn;
  let uws: Uws;
  try {
    console.warn = () => {};
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    uws = require('uWebSockets.js') as Uws;
  } catch (error) {
    throw new NativeUwsMissing(String(error));
  } finally {
    console.warn = warn;
  }
  const isNative = String(uws.App).includes('[native code]') && typeof uws.us_socket_local_port === 'function';
  if (!isNative || !nativeBindingMapped()) throw new NativeUwsMissing('the package returned its JavaScript fallback');
  // uWS adds `uWebSockets: 20` to every response unless told to be silent before any app is
  // created (issue 13: scanners flag server banners). Idempotent, so every thread may call it.
  uws._cfg('silent');
  return uws;
}
