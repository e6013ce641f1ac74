export * from "./reserved.js";
export * from "./allocator.js";
