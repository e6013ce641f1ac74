export * from "./label.js";
export * from "./selector.js";
export * from "./cidr.js";
export * from "./k8s.js";
