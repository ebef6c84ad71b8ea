/**
 * The one response every reference backend sends: a small FHIR-shaped JSON document, the
 * typical size of an EHR API read. 55 bytes exactly (asserted where it is served).
 */
export const BODY = '{"resourceType":"Patient","id":"example","active":true}';
export const BODY_BYTES = 55;
