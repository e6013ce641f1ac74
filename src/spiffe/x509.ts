/**
 * @peculiar/x509, loaded after the Reflect metadata API it needs (reflect-metadata.ts). Every
 * module of Membrane uses it through this file; ES modules evaluate imports in order, so the
 * polyfill is in place before the library's first line runs.
 */
import "./reflect-metadata.js";
export * from "@peculiar/x509";
