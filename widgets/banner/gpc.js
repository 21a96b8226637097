/*
 * Global Privacy Control (W3C GPC; CCPA opt-out of sale and sharing): the browser's signal turns marketing off for a
 * visitor who made no explicit choice, and "Accept all" leaves marketing off while it is present. It has the lowest
 * priority: the visitor's own marketing switch still counts. The server also reads the Sec-GPC header.
 */
import {N, safe} from "./core.js";

export const gpcOn = () => safe(() => N.globalPrivacyControl === true, false);
